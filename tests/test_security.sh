#!/bin/sh
# Model names that would reach outside pinferd's models directory, sent
# over D-Bus (the socket side is tests/test_security.c): LoadModel and
# EvictModel refuse them with InvalidArgument (a path) or NotFound (no such
# entry), ListModels shows none of them, and nothing is loaded. The
# directory holds a subdirectory, a symlinked directory pointing outside,
# a link to a device and a dangling link; a model file beside the
# directory and one given by absolute path are the targets.
me=test_security
# shellcheck source=tests/dbus_lib.sh
. "$(dirname "$0")/dbus_lib.sh"
dbus_setup gdbus

model=$SHARED/models/stories260K/stories260K.gguf
mkdir "$tmp/models" "$tmp/models/sub"
ln -s "$model" "$tmp/models/stories260K.gguf"
ln -s "$model" "$tmp/outside.gguf"
ln -s "$model" "$tmp/models/sub/inner.gguf"
ln -s "$tmp" "$tmp/models/escape"
ln -s /dev/zero "$tmp/models/zero.gguf"
ln -s /nonexistent/model.gguf "$tmp/models/dangling.gguf"
start_bus open
"$pinferd" --config /dev/null --socket "$tmp/sock" --models "$tmp/models" --session-bus --threads 1 \
	>"$tmp/pinferd.log" 2>&1 &
daemon=$!
wait_for "the name $name" bctl status "$name"

gcall() {  # method args...
	method=$1
	shift
	gdbus call --address "$addr" --dest "$name" --object-path "$mgr" --method "$iface.$method" "$@" 2>&1
}
for bad in ../outside ../outside.gguf "$tmp/outside" "$tmp/outside.gguf" "$model" sub/inner \
	escape/outside escape/models/stories260K ./stories260K stories260K/../stories260K \
	zero dangling stories260K.gguf escape sub .. . ""; do
	for method in LoadModel EvictModel; do
		if [ "$method" = LoadModel ]; then
			out=$(gcall "$method" "$bad" '{}')
		else
			out=$(gcall "$method" "$bad")
		fi
		case "$out" in
		*org.pinfer.Pinfer1.Error.InvalidArgument* | *org.pinfer.Pinfer1.Error.NotFound*) ;;
		*) fail "$method('$bad') was not refused: $out" ;;
		esac
	done
done
models=$(bctl call "$name" "$mgr" "$iface" ListModels)
case "$models" in
*stories260K*) ;;
*) fail "ListModels lost stories260K: $models" ;;
esac
for hidden in inner outside zero dangling escape sub; do
	case "$models" in *"$hidden"*) fail "ListModels shows $hidden: $models" ;; esac
done
loaded=$(bctl get-property "$name" "$mgr" "$iface" LoadedModels) || fail "reading LoadedModels"
[ "$loaded" = "ao 0" ] || fail "a refused name loaded a model: LoadedModels is $loaded"
# The real name still loads.
bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' stories260K 0 >/dev/null || fail "LoadModel(stories260K)"
stop_daemon_checked
echo "$me: ok"
