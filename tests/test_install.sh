#!/bin/sh
# make install, checked against docs/install.md: every file of its table is
# installed with the documented mode and content and nothing else is; the
# programs run; the units verify; the D-Bus files are well-formed; the man
# pages and the example configuration cover every option the programs
# list; and with PREFIX=/usr/local every file that names the daemon names
# /usr/local/sbin/pinferd.
set -u
: "${BUILD:?BUILD must name the build directory}"

fail() {
	echo "test_install: FAIL: $*" >&2
	exit 1
}

if [ ! -f Makefile ] || [ ! -f docs/install.md ]; then
	fail "run this from the top of the source tree"
fi
command -v python3 >/dev/null || fail "python3 is needed to check the XML and the man pages"

# The make flags that select $BUILD, so that make installs the binaries
# already built there instead of building another tree.
case "${BUILD%/}" in
*/san-nosystemd | san-nosystemd) sanitize=1 systemd=0 mk_build=build/san-nosystemd ;;
*/rel-nosystemd | rel-nosystemd) sanitize=0 systemd=0 mk_build=build/rel-nosystemd ;;
*/san | san) sanitize=1 systemd=1 mk_build=build/san ;;
*/rel | rel) sanitize=0 systemd=1 mk_build=build/rel ;;
*) fail "BUILD=$BUILD is none of build/rel, build/san, build/rel-nosystemd, build/san-nosystemd" ;;
esac
[ "$(cd "$BUILD" 2>/dev/null && pwd -P)" = "$(cd "$mk_build" 2>/dev/null && pwd -P)" ] ||
	fail "BUILD=$BUILD is not $mk_build of this tree"
for bin in pinferd pinfer pinfer-model; do
	[ -x "$mk_build/$bin" ] || fail "$mk_build/$bin not found (build it first)"
done

# What the caller's environment or an outer make would otherwise slip into
# the install.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES DESTDIR PREFIX UNITDIR DBUSDIR MANDIR SYSCONFDIR

tmp=$(mktemp -d /tmp/pinfer-install-XXXXXX) || fail "cannot create a temporary directory"
cleanup() {
	status=$?
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# make_install DESTDIR PREFIX: the binaries count as up to date (-o), and a
# dry run first makes sure nothing but installing would happen.
make_install() {
	set -- --no-print-directory SANITIZE=$sanitize WITH_SYSTEMD=$systemd \
		-o "$mk_build/pinferd" -o "$mk_build/pinfer" -o "$mk_build/pinfer-model" \
		DESTDIR="$1" PREFIX="$2" install
	make -n "$@" >"$tmp/dry-run" 2>&1 || { cat "$tmp/dry-run" >&2; fail "make -n install failed"; }
	if grep -v -e '^install ' -e '^[[:space:]]' "$tmp/dry-run" >"$tmp/extra"; then
		cat "$tmp/dry-run" >&2
		fail "make install would do more than install: $(head -n 1 "$tmp/extra")"
	fi
	grep -q "$mk_build/pinferd" "$tmp/dry-run" || fail "make install does not install $mk_build/pinferd"
	make "$@" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log" >&2; fail "make install failed"; }
}

# The table of docs/install.md: "| `PATH` | MODE | `SOURCE` | what |".
# shellcheck disable=SC2016
sed -n 's/^| `\(\/[^`]*\)` | \([0-7]\{4\}\) | `\([^`]*\)` |.*/\1 \2 \3/p' docs/install.md >"$tmp/table"
[ "$(wc -l <"$tmp/table")" -ge 10 ] || fail "no table of installed files found in docs/install.md"
cut -d' ' -f1 "$tmp/table" | sort >"$tmp/documented"
[ -z "$(uniq -d "$tmp/documented")" ] || fail "docs/install.md lists a file twice: $(uniq -d "$tmp/documented")"

# (1) PREFIX=/usr: exactly the documented files, modes and contents.
root="$tmp/usr-root"
make_install "$root" /usr
(cd "$root" && find . ! -type d) | sed 's/^\.//' | sort >"$tmp/installed"
extra=$(comm -13 "$tmp/documented" "$tmp/installed")
[ -z "$extra" ] || fail "installed but not in docs/install.md: $(echo "$extra" | tr '\n' ' ')"
missing=$(comm -23 "$tmp/documented" "$tmp/installed")
[ -z "$missing" ] || fail "in docs/install.md but not installed: $(echo "$missing" | tr '\n' ' ')"
while read -r path mode source; do
	f="$root$path"
	if [ ! -f "$f" ] || [ -L "$f" ]; then
		fail "$path is not a regular file"
	fi
	m=$(stat -c %a "$f")
	[ "$m" = "$mode" ] || [ "0$m" = "$mode" ] || fail "$path has mode $m, docs/install.md says $mode"
	src=$(printf '%s\n' "$source" | sed "s#^\\\$(BUILD)/#$mk_build/#")
	[ -f "$src" ] || fail "$path: its source $source ($src) does not exist"
	# With PREFIX=/usr the rewrite of /usr/sbin/pinferd changes nothing.
	cmp -s "$src" "$f" || fail "$path differs from $src"
done <"$tmp/table"

# Whatever the table says: every interface file of systemd/ is installed
# as it is, and so are the man pages of docs/man/.
for x in systemd/*.xml; do
	cmp "$x" "$root/usr/share/dbus-1/interfaces/${x##*/}" || fail "${x##*/} is not installed as it is"
done
for page in docs/man/*.[18]; do
	cmp "$page" "$root/usr/share/man/man${page##*.}/${page##*/}" || fail "${page##*/} is not installed"
done

# (2) The programs run.
for bin in /usr/bin/pinfer /usr/bin/pinfer-model /usr/sbin/pinferd; do
	[ -x "$root$bin" ] || fail "$bin is not executable"
done
out=$("$root/usr/bin/pinfer" --version 2>&1) || fail "pinfer --version failed: $out"
case "$out" in "pinfer "*) ;; *) fail "pinfer --version printed '$out'" ;; esac
out=$("$root/usr/sbin/pinferd" --version 2>&1) || fail "pinferd --version failed: $out"
case "$out" in "pinferd "*) ;; *) fail "pinferd --version printed '$out'" ;; esac
"$root/usr/bin/pinfer-model" --help >/dev/null 2>&1 || fail "pinfer-model --help failed"

# (3) The units verify, with ExecStart= pointing at the installed binary.
unitdir="$root/usr/lib/systemd/system"
grep -q '^ExecStart=/usr/sbin/pinferd ' "$unitdir/pinferd.service" ||
	fail "the installed pinferd.service does not start /usr/sbin/pinferd"
if command -v systemd-analyze >/dev/null; then
	mkdir "$tmp/units"
	sed "s#^ExecStart=/usr/sbin/pinferd#ExecStart=$root/usr/sbin/pinferd#" "$unitdir/pinferd.service" \
		>"$tmp/units/pinferd.service"
	cp "$unitdir/pinferd.socket" "$tmp/units/"
	systemd-analyze verify "$tmp/units/pinferd.socket" "$tmp/units/pinferd.service" \
		>"$tmp/verify.log" 2>&1 || { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify failed"; }
	# It only warns about a line it cannot parse; that is a failure here.
	! grep "$tmp/units/" "$tmp/verify.log" >&2 || fail "systemd-analyze verify warned about the units"
else
	echo "test_install: systemd-analyze not found; units not verified"
fi

# (4) The OpenRC script parses and starts the installed binary.
sh -n "$root/etc/init.d/pinferd" || fail "/etc/init.d/pinferd does not parse"
grep -q '^command="/usr/sbin/pinferd"$' "$root/etc/init.d/pinferd" ||
	fail "/etc/init.d/pinferd does not run /usr/sbin/pinferd"

# (5) D-Bus files, man pages and the example configuration.
python3 - "$root" /usr "$mk_build" <<'PY' || fail "(above)"
import os, re, subprocess, sys
import xml.etree.ElementTree as ET

root, prefix, build = sys.argv[1:]
dbus = root + "/usr/share/dbus-1"
errors = []
def error(msg):
    errors.append(msg)

# The bus policy: well-formed, and only pinferd's user owns the name.
try:
    policy = ET.parse(dbus + "/system.d/org.pinfer.Pinfer1.conf").getroot()
except ET.ParseError as e:
    sys.exit("test_install: FAIL: the D-Bus policy is not well-formed XML: %s" % e)
if policy.tag != "busconfig":
    error("the D-Bus policy's root element is <%s>, not <busconfig>" % policy.tag)
owners = [p.get("user") for p in policy.iter("policy")
          for a in p.iter("allow") if a.get("own") == "org.pinfer.Pinfer1"]
if owners != ["pinferd"]:
    error("the D-Bus policy lets %r own org.pinfer.Pinfer1, expected only the user pinferd" % owners)

# The interfaces: well-formed, one interface each, named as the file.
for name in ("org.pinfer.Pinfer1.Manager", "org.pinfer.Pinfer1.Model"):
    try:
        node = ET.parse("%s/interfaces/%s.xml" % (dbus, name)).getroot()
    except ET.ParseError as e:
        error("interfaces/%s.xml is not well-formed XML: %s" % (name, e))
        continue
    found = [i.get("name") for i in node.iter("interface")]
    if found != [name]:
        error("interfaces/%s.xml declares %r" % (name, found))

# The activation file: a [D-BUS Service] group whose Name= is the file's.
path = dbus + "/system-services/org.pinfer.Pinfer1.service"
group, keys = None, {}
for n, line in enumerate(open(path, encoding="utf-8"), 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    if line.startswith("["):
        if group is not None or line != "[D-BUS Service]":
            error("%s:%d: unexpected group %s" % (path, n, line))
        group = line
    elif "=" in line and group:
        k, v = line.split("=", 1)
        if k in keys:
            error("%s:%d: %s given twice" % (path, n, k))
        keys[k] = v
    else:
        error("%s:%d: not a key=value line in a group: %s" % (path, n, line))
if keys.get("Name") != "org.pinfer.Pinfer1":
    error("the activation file's Name= is %r" % keys.get("Name"))
if not keys.get("Exec", "").startswith("/"):
    error("the activation file has no absolute Exec=")
if "pinferd" in keys.get("Exec", "") and not keys["Exec"].startswith(prefix + "/sbin/pinferd"):
    error("the activation file runs %r, not %s/sbin/pinferd" % (keys["Exec"], prefix))
if keys.get("User") != "pinferd":
    error("the activation file's User= is %r, expected pinferd" % keys.get("User"))
if keys.get("SystemdService") != "pinferd.service":
    error("the activation file's SystemdService= is %r" % keys.get("SystemdService"))

# The programs' options and commands, as their --help lists them.
def run(*argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.stdout

def long_options(text):
    return set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", text)) - {"help", "version"}

def commands(text):
    # The indented lines of a "commands:" paragraph, up to a blank line.
    body = text.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^  ([a-z][a-z-]*)\b", body, re.M)]

def roff(page):
    return open("%s%s/share/man/%s" % (root, prefix, page), encoding="utf-8").read()

def has_option(text, opt):
    pat = re.escape("\\-\\-" + opt.replace("-", "\\-")) + r"(?![a-z0-9]|\\-)"
    return re.search(pat, text) is not None

def has_command(text, cmd):
    cmd = re.escape(cmd.replace("-", "\\-"))
    return re.search(r"\\fB%s\\f|^\.BI? %s(\s|$)" % (cmd, cmd), text, re.M) is not None

def check_page(page, name, section):
    text = roff(page)
    th = re.search(r"^\.TH (\S+) (\S+)", text, re.M)
    if not th or th.group(1).replace("\\-", "-").lower() != name or th.group(2) != section:
        error("%s: no .TH %s %s line" % (page, name.upper(), section))
    for sh in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "SEE ALSO"):
        if not re.search(r'^\.SH "?%s"?$' % sh, text, re.M):
            error("%s: no %s section" % (page, sh))
    return text

bins = {"pinferd": "%s/pinferd" % build, "pinfer": "%s/pinfer" % build,
        "pinfer-model": "%s/pinfer-model" % build}

text = check_page("man8/pinferd.8", "pinferd", "8")
for sh in ("OPTIONS", "CONFIGURATION FILE", "SIGNALS", "ENVIRONMENT", "FILES"):
    if not re.search(r'^\.SH "?%s"?$' % sh, text, re.M):
        error("pinferd.8: no %s section" % sh)
for var in ("PINFER_SOCKET", "NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS",
            "MEMORY_PRESSURE_WATCH", "MEMORY_PRESSURE_WRITE", "DBUS_SESSION_BUS_ADDRESS"):
    if var not in text:
        error("pinferd.8 does not mention %s" % var)
for sig in ("SIGTERM", "SIGHUP"):
    if sig not in text:
        error("pinferd.8 does not mention %s" % sig)
help_text = run(bins["pinferd"], "--help")
daemon_opts = long_options(help_text)
if not {"socket", "models", "config"} <= daemon_opts:
    error("pinferd --help lists no options: %r" % help_text[:200])
for opt in sorted(daemon_opts):
    if not has_option(text, opt):
        error("pinferd.8 does not document --%s" % opt)

# The example configuration: every key of the file format, commented out,
# and the lines parse: uncommented, pinferd accepts them and only fails
# to bind a socket in a directory that does not exist (status 1, not 2).
example = open(root + "/etc/pinfer/pinferd.conf.example", encoding="utf-8").read()
keys = re.findall(r"^#([a-z][a-z0-9-]*) = \S", example, re.M)
for opt in sorted(daemon_opts - {"config", "session-bus"}):
    if opt not in keys:
        error("pinferd.conf.example does not list '%s'" % opt)
for key in keys:
    if key not in daemon_opts:
        error("pinferd.conf.example lists '%s', which pinferd does not know" % key)
tmp = os.path.dirname(root)
conf = tmp + "/pinferd.conf"
with open(conf, "w") as f:
    f.write(re.sub(r"^#([a-z][a-z0-9-]* = )", r"\1", example, flags=re.M))
try:
    p = subprocess.run([bins["pinferd"], "--config", conf, "--socket", tmp + "/no/such/dir/sock",
                        "--models", tmp, "--bus", "none"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=20)
    if p.returncode != 1 or "no/such/dir/sock" not in p.stdout:
        error("pinferd with pinferd.conf.example uncommented: status %d, expected 1 "
              "(cannot bind):\n%s" % (p.returncode, p.stdout))
except subprocess.TimeoutExpired:
    error("pinferd with pinferd.conf.example uncommented did not exit")

text = check_page("man1/pinfer.1", "pinfer", "1")
help_text = run(bins["pinfer"], "--help")
cmds = commands(help_text)
if "run" not in cmds:
    error("pinfer --help lists no commands: %r" % help_text[:200])
for opt in sorted(long_options(help_text)):
    if not has_option(text, opt):
        error("pinfer.1 does not document --%s" % opt)
for cmd in cmds:
    if not has_command(text, cmd):
        error("pinfer.1 does not document the command %s" % cmd)
    for opt in sorted(long_options(run(bins["pinfer"], cmd, "--help"))):
        if not has_option(text, opt):
            error("pinfer.1 does not document --%s of %s" % (opt, cmd))
for var in ("PINFER_SOCKET",):
    if var not in text:
        error("pinfer.1 does not mention %s" % var)

text = check_page("man1/pinfer-model.1", "pinfer-model", "1")
help_text = run(bins["pinfer-model"], "--help")
cmds = sorted(set(commands(help_text)))
if "info" not in cmds:
    error("pinfer-model --help lists no commands: %r" % help_text[:200])
for opt in sorted(long_options(help_text)):
    if not has_option(text, opt):
        error("pinfer-model.1 does not document --%s" % opt)
for cmd in cmds:
    if not has_command(text, cmd):
        error("pinfer-model.1 does not document the command %s" % cmd)
    for opt in sorted(long_options(run(bins["pinfer-model"], cmd, "--help"))):
        if not has_option(text, opt):
            error("pinfer-model.1 does not document --%s of %s" % (opt, cmd))

if errors:
    sys.exit("\n".join("test_install: FAIL: " + e for e in errors))
PY

# The man pages format without warnings, where groff is installed.
if command -v groff >/dev/null; then
	for page in man1/pinfer.1 man1/pinfer-model.1 man8/pinferd.8; do
		warnings=$(groff -man -Tutf8 -ww -z "$root/usr/share/man/$page" 2>&1)
		[ -z "$warnings" ] || fail "$page: $warnings"
	done
else
	echo "test_install: groff not found; man pages not formatted"
fi

# (6) PREFIX=/usr/local: the same files under /usr/local, except the D-Bus
# and /etc ones, and whatever names the daemon names /usr/local/sbin/pinferd.
root="$tmp/local-root"
make_install "$root" /usr/local
sed -e '\#^/usr/share/dbus-1/#b' -e 's#^/usr/#/usr/local/#' "$tmp/documented" | sort >"$tmp/expected"
(cd "$root" && find . ! -type d) | sed 's/^\.//' | sort >"$tmp/installed"
[ "$(cat "$tmp/expected")" = "$(cat "$tmp/installed")" ] ||
	fail "PREFIX=/usr/local installed: $(comm -3 "$tmp/expected" "$tmp/installed" | tr '\n' ' ')"
unitdir="$root/usr/local/lib/systemd/system"
grep -q '^ExecStart=/usr/local/sbin/pinferd ' "$unitdir/pinferd.service" ||
	fail "with PREFIX=/usr/local, pinferd.service runs $(grep '^ExecStart=' "$unitdir/pinferd.service")"
grep -q '^command="/usr/local/sbin/pinferd"$' "$root/etc/init.d/pinferd" ||
	fail "with PREFIX=/usr/local, /etc/init.d/pinferd runs $(grep '^command=' "$root/etc/init.d/pinferd")"
for f in "$unitdir/pinferd.service" "$unitdir/pinferd.socket" "$root/etc/init.d/pinferd" \
	"$root/usr/share/dbus-1/system-services/org.pinfer.Pinfer1.service"; do
	! grep -n '/usr/sbin/pinferd' "$f" || fail "with PREFIX=/usr/local, $f still names /usr/sbin/pinferd"
done
python3 - "$root" /usr/local "$mk_build" <<'PY' || fail "(above)"
import sys
root, prefix = sys.argv[1:3]
keys = dict(l.strip().split("=", 1) for l in
            open(root + "/usr/share/dbus-1/system-services/org.pinfer.Pinfer1.service")
            if "=" in l and not l.lstrip().startswith("#"))
exe = keys.get("Exec", "")
if "pinferd" in exe and not exe.startswith(prefix + "/sbin/pinferd"):
    sys.exit("test_install: FAIL: with PREFIX=%s the activation file runs %s" % (prefix, exe))
PY

echo "test_install: ok"
