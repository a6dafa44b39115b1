#!/bin/sh
# `make demo`: starts pinferd on a temporary socket with stories260K (a
# 260K-parameter TinyStories model), streams a story through the `pinfer`
# client, prints the timings and stops the daemon. The model comes from
# $SHARED/models/stories260K when present; otherwise its llama2.c checkpoint
# is fetched from its public home, checked against known SHA-256 sums, and
# converted to GGUF with our own tool.
set -eu
: "${BUILD:=build/rel}"
: "${SHARED:=../shared}"
model="$SHARED/models/stories260K/stories260K.gguf"

if [ ! -f "$model" ]; then
	cache="build/demo"
	model="$cache/stories260K.gguf"
	base="https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K"
	mkdir -p "$cache"
	if [ ! -f "$model" ]; then
		for f in stories260K.bin:b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696 \
		         tok512.bin:037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312; do
			name=${f%%:*}
			sum=${f#*:}
			if ! [ -f "$cache/$name" ] && ! curl -fsSL -o "$cache/$name" "$base/$name"; then
				echo "demo: cannot download $base/$name" >&2
				echo "demo: download it by hand into $cache/ (or put the shared data at $SHARED)" >&2
				exit 1
			fi
			if ! echo "$sum  $cache/$name" | sha256sum -c --quiet -; then
				echo "demo: $cache/$name does not have the expected SHA-256 $sum" >&2
				rm -f "$cache/$name"
				exit 1
			fi
		done
		"$BUILD/pinfer-model" convert "$cache/stories260K.bin" "$cache/tok512.bin" -o "$model"
	fi
fi

dir=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
mkdir "$dir/models"
ln -s "$(cd "$(dirname "$model")" && pwd)/$(basename "$model")" "$dir/models/stories260K.gguf"
"$BUILD/pinferd" --socket "$dir/pinferd.sock" --models "$dir/models" --log-level warn &
pid=$!
for _ in $(seq 100); do
	[ -S "$dir/pinferd.sock" ] && break
	sleep 0.05
done

prompt="Once upon a time"
echo "== pinfer demo: pinferd serving stories260K, a 260K-parameter TinyStories model =="
printf '%s' "$prompt"
"$BUILD/pinfer" --socket "$dir/pinferd.sock" run stories260K "$prompt" -n 200 --temp 0.8 --top-p 0.9 -s 42 -v
