#!/usr/bin/env bash
# Installs what Herald's browser test (e2e/, run with HERALD_BROWSER=1) needs
# on a Debian machine that has Go and root:
#
#   - Debian's Chromium at /usr/bin/chromium (no browser download: the test
#     drives this one through playwright-core),
#   - Node.js (>= 20) and npm, from Debian's packages when missing,
#   - the npm packages of e2e/, with `npm ci` from e2e/package-lock.json,
#   - Redis and NATS (with JetStream) for the cluster tests: Debian's
#     redis-server and nats-server, installed when missing and started on
#     127.0.0.1:6379 and :4222 when nothing answers there. The tests also
#     run private servers of their own from the same binaries.
#
# Idempotent: each step is skipped when its result is already in place, so
# running it again costs a few checks. Safe to run from any directory.
set -euo pipefail

readonly MIN_NODE_MAJOR=20 # playwright-core's "engines" field
readonly CHROMIUM=/usr/bin/chromium

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly e2e_dir="$repo_root/e2e"
readonly stamp="$e2e_dir/node_modules/.herald-install-stamp"

log() { printf 'install-test-deps: %s\n' "$*"; }
die() {
	printf 'install-test-deps: ERROR: %s\n' "$*" >&2
	exit 1
}
trap 'die "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

# Run as root, or through sudo when it is there.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run: $* (run this script as root, or install sudo)"
	fi
}

apt_updated=false
# apt_install installs Debian packages, running `apt-get update` only when
# needed: first when apt has no candidate for one of them (no package lists
# yet), or after an install that failed on stale lists.
apt_install() {
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script expects Debian; install $* by hand"
	local pkg policy need_update=false
	for pkg in "$@"; do
		policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
		if [[ $policy != *"Candidate: "[!\(]* ]]; then
			need_update=true
		fi
	done
	if $need_update && ! $apt_updated; then
		log "apt-get update (no install candidate for: $*)"
		as_root apt-get update || die "apt-get update failed"
		apt_updated=true
	fi
	log "apt-get install -y --no-install-recommends $*"
	if as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; then
		return
	fi
	# Stale package lists name versions the mirror no longer has: refresh once.
	$apt_updated && die "apt-get install $* failed"
	log "apt-get install failed; apt-get update and one more try"
	as_root apt-get update || die "apt-get update failed"
	apt_updated=true
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" ||
		die "apt-get install $* failed"
}

# 1. Chromium.
if [[ -x $CHROMIUM ]]; then
	log "chromium: present ($("$CHROMIUM" --version 2>/dev/null || echo "version unknown"))"
else
	apt_install chromium
	[[ -x $CHROMIUM ]] || die "chromium was installed but $CHROMIUM is missing"
	log "chromium: installed ($("$CHROMIUM" --version 2>/dev/null || echo "version unknown"))"
fi

# 2. Node.js and npm. Only what is missing is installed: a Node.js from
# elsewhere (NodeSource) bundles npm, and Debian's npm would conflict.
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]} > 0)); then
	apt_install "${missing[@]}"
fi
command -v node >/dev/null 2>&1 || die "node not found after installing ${missing[*]}"
command -v npm >/dev/null 2>&1 || die "npm not found after installing ${missing[*]}"
node_version=$(node --version)
node_major=${node_version#v}
node_major=${node_major%%.*}
if ! [[ $node_major =~ ^[0-9]+$ ]] || ((node_major < MIN_NODE_MAJOR)); then
	die "Node.js $node_version is too old: playwright-core needs >= $MIN_NODE_MAJOR (Debian 12's nodejs is 18; install Node.js $MIN_NODE_MAJOR or later, e.g. from Debian 13)"
fi
log "node $node_version, npm $(npm --version 2>/dev/null)"

# 3. npm packages of e2e/. The stamp records the lockfile's hash and the
# Node.js version that `npm ci` last ran with; npm ci empties node_modules
# first, so a failed run leaves no stale stamp behind.
[[ -f $e2e_dir/package-lock.json ]] || die "$e2e_dir/package-lock.json not found"
want=$(
	{
		sha256sum "$e2e_dir/package.json" "$e2e_dir/package-lock.json" | cut -d' ' -f1
		echo "$node_version"
	} | sha256sum | cut -d' ' -f1
)
if [[ -f $stamp && $(<"$stamp") == "$want" && -d $e2e_dir/node_modules/playwright-core ]]; then
	log "e2e/node_modules: up to date with package-lock.json"
else
	log "npm ci in e2e/"
	(cd "$e2e_dir" && npm ci --no-audit --no-fund) || die "npm ci in $e2e_dir failed"
	printf '%s\n' "$want" >"$stamp"
	log "e2e/node_modules: installed"
fi

# 4. Redis and NATS. A server already answering on the port is used as it
# is (CI machines start their own); otherwise Debian's is started the way
# those machines start it. Either way the port must answer, or the cluster
# tests could not run: fail here, loudly.
answers() { # host port probe-line expected-prefix
	local reply
	reply=$(timeout 3 bash -c 'exec 3<>/dev/tcp/$1/$2 && { [[ -z $3 ]] || printf "%s\r\n" "$3" >&3; } && read -r -t 2 line <&3 && printf "%s" "$line"' _ "$1" "$2" "$3" 2>/dev/null) || true
	[[ $reply == "$4"* ]]
}
wait_answers() { # name host port probe expected
	local i
	for ((i = 0; i < 100; i++)); do
		answers "$2" "$3" "$4" "$5" && return 0
		sleep 0.1
	done
	die "$1 does not answer on $2:$3 (started it, waited 10 s): the cluster tests need it"
}
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
if answers 127.0.0.1 6379 PING +PONG; then
	log "redis: answering on 127.0.0.1:6379"
else
	log "redis: starting redis-server on 127.0.0.1:6379"
	redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
		--dir /tmp --logfile /tmp/herald-test-redis.log
	wait_answers redis 127.0.0.1 6379 PING +PONG
fi
nats_bin=$(command -v nats-server || true)
[[ -n $nats_bin || ! -x /usr/sbin/nats-server ]] || nats_bin=/usr/sbin/nats-server
if [[ -z $nats_bin ]]; then
	apt_install nats-server
	nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
fi
if answers 127.0.0.1 4222 "" INFO; then
	# Debian's packaged service, started by its install on a machine with
	# systemd, has no JetStream: the tests cannot use that one.
	timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/4222 && read -r -t 2 line <&3 && [[ $line == *\"jetstream\":true* ]]' ||
		die "a NATS server answers on 127.0.0.1:4222 without JetStream (Debian's nats-server.service?): stop it, or start it with -js"
	log "nats: answering on 127.0.0.1:4222, with JetStream"
else
	log "nats: starting nats-server with JetStream on 127.0.0.1:4222"
	mkdir -p /tmp/herald-test-nats
	nohup "$nats_bin" -a 127.0.0.1 -p 4222 -js -sd /tmp/herald-test-nats -l /tmp/herald-test-nats.log >/dev/null 2>&1 &
	wait_answers nats 127.0.0.1 4222 "" INFO
fi

log "done"
