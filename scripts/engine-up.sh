#!/usr/bin/env bash
# Makes this machine ready for the integration tests, idempotently (a second run takes a second):
# - a Docker engine on unix:///var/run/docker.sock: the one already there (a GitHub runner, a
#   workstation), or Debian's docker.io started here;
# - the base image the tests build FROM (debian:trixie-slim): pulled where a registry answers, made
#   with debootstrap from Debian's package archive where none does;
# - the host tools the tests drive: docker-compose (v1 command), e2fsprogs, zstd, attr, setpriv, sudo,
#   iptables and tinyproxy (a runner behind a proxy);
# - two job users in the docker group: `runner` with passwordless sudo (as on GitHub-hosted runners)
#   and `runner-nosudo` without it (as on some self-hosted runners).
# Needs root (or passwordless sudo) and Debian's apt for what is missing. Usage: scripts/engine-up.sh
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then exec sudo -n -- "$0" "$@"; fi

SOCKET=unix:///var/run/docker.sock
BASE=debian:trixie-slim
STATE=/var/lib/setup-dind-dev
mkdir -p "$STATE"
log() { printf 'engine-up: %s\n' "$*" >&2; }
docker() { command docker -H "$SOCKET" "$@"; }
engine_answers() { docker version >/dev/null 2>&1; }

# Debian packages for whichever commands are missing (one apt run, only when needed).
need=()
want() { command -v "$1" >/dev/null || need+=("$2"); }
engine_answers || want dockerd docker.io
want docker docker.io
want docker-compose docker-compose
want mke2fs e2fsprogs
want zstd zstd
want getfattr attr
want setpriv util-linux
want sudo sudo
want iptables iptables
want tinyproxy tinyproxy
want python3 python3-minimal
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates "${need[@]}" >/dev/null
fi

# Capabilities the kernel knows but this machine's bounding set lacks (sandboxed VMs drop some):
# runc would fail `--privileged` asking for them, so the engine runs runc through a wrapper that
# removes them from each container's spec.
unavailable_caps() {
	python3 -S - <<'PY'
import re
names = ("CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
         "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
         "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
         "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
         "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE").split()
bounding = int(re.search(r"CapBnd:\s*(\w+)", open("/proc/self/status").read()).group(1), 16)
last = int(open("/proc/sys/kernel/cap_last_cap").read())
print(" ".join("CAP_" + n for i, n in enumerate(names[: last + 1]) if not bounding >> i & 1))
PY
}

# The wrapper runs the system Python without site packages: a version manager's shim on PATH would
# add most of a second to every container create, start and exec.
write_runc_wrapper() {
	local drop="$1" wrapper=/usr/local/libexec/setup-dind-runc python=/usr/bin/python3
	[ -x "$python" ] || python="$(command -v python3)"
	mkdir -p "${wrapper%/*}"
	cat >"$wrapper.new" <<PY
#!$python -S
import json, os, sys
DROP = set("$drop".split())
args = sys.argv[1:]
def value(*flags):
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return None
def strip(path, key):
    with open(path) as f:
        spec = json.load(f)
    caps = (spec.get("process", {}) if key == "process" else spec).get("capabilities") or {}
    for kind, listed in caps.items():
        if isinstance(listed, list):
            caps[kind] = [c for c in listed if c not in DROP]
    with open(path, "w") as f:
        json.dump(spec, f)
if "create" in args or "run" in args:
    strip(os.path.join(value("--bundle", "-b") or os.getcwd(), "config.json"), "process")
elif "exec" in args and value("--process", "-p"):
    strip(value("--process", "-p"), "self")
os.execv("/usr/sbin/runc", ["runc"] + args)
PY
	chmod 755 "$wrapper.new"
	mv "$wrapper.new" "$wrapper"
	echo "$wrapper"
}

start_engine() {
	local drop
	drop="$(unavailable_caps)"
	mkdir -p /etc/docker
	if [ -n "$drop" ]; then
		log "the bounding set lacks $drop: runc runs through a wrapper that drops them"
		echo "{\"runtimes\":{\"bounded\":{\"path\":\"$(write_runc_wrapper "$drop")\"}},\"default-runtime\":\"bounded\"}" \
			>/etc/docker/daemon.json
	fi
	log "starting dockerd (log: $STATE/dockerd.log)"
	rm -f /var/run/docker.pid
	setsid dockerd --host="$SOCKET" >"$STATE/dockerd.log" 2>&1 </dev/null &
	for _ in $(seq 1 240); do
		engine_answers && return 0
		sleep 0.25
	done
	log "dockerd did not answer within 60 s:"
	tail -n 30 "$STATE/dockerd.log" >&2
	exit 1
}

job_users() {
	getent group docker >/dev/null || groupadd --system docker
	local user
	for user in runner runner-nosudo; do
		id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --groups docker "$user"
		id -nG "$user" | grep -qw docker || usermod -aG docker "$user"
	done
	mkdir -p /etc/sudoers.d
	echo 'runner ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/setup-dind-runner
	chmod 440 /etc/sudoers.d/setup-dind-runner
}

# debian:trixie-slim without a registry: a minbase root filesystem from Debian's archive, imported.
base_image() {
	docker image inspect "$BASE" >/dev/null 2>&1 && return 0
	timeout 60 docker pull -q "$BASE" >/dev/null 2>&1 && return 0
	local suite=trixie rootfs="$STATE/rootfs-trixie.tar"
	if [ ! -s "$rootfs" ]; then
		command -v debootstrap >/dev/null || {
			apt-get update -qq
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
		}
		log "no registry answers: making $BASE with debootstrap (about a minute)"
		local root
		root="$(mktemp -d)"
		debootstrap --variant=minbase "$suite" "$root" >"$STATE/debootstrap.log" 2>&1 || {
			tail -n 20 "$STATE/debootstrap.log" >&2
			rm -rf "$root"
			exit 1
		}
		rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
		tar -C "$root" -cf "$rootfs.new" . && mv "$rootfs.new" "$rootfs"
		rm -rf "$root"
	fi
	docker import -c 'CMD ["bash"]' "$rootfs" "$BASE" >/dev/null
	log "made $BASE"
}

engine_answers || start_engine
job_users
# The socket's group, for the job users (an engine started elsewhere may have made it root-only).
chgrp docker /var/run/docker.sock && chmod 660 /var/run/docker.sock
base_image
if ! docker run --rm --privileged "$BASE" true 2>"$STATE/privileged.err"; then
	log "a privileged container does not start here:"
	cat "$STATE/privileged.err" >&2
	exit 1
fi
log "ready: $SOCKET ($(docker version --format '{{.Server.Version}}')), $BASE, users runner and runner-nosudo"
