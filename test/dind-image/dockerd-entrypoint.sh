#!/bin/sh
# Entrypoint of setup-dind's test dind image: a small equivalent of the
# official docker:dind `dockerd-entrypoint.sh` + `dind` scripts, written for
# this image (Debian, run --privileged).
#
#   (no arguments)        dockerd --host=unix:///var/run/docker.sock
#   -flag ...             dockerd -flag ...
#   dockerd ...           prepare the container for a nested dockerd, then run it
#   anything else         exec'd as is
#
# Unlike the official image it never generates TLS certificates and never
# listens on TCP by itself: pass --host/--tls* flags explicitly.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	set -- dockerd --host=unix:///var/run/docker.sock "$@"
fi
[ "$1" = dockerd ] || exec "$@"

say() { echo "dockerd-entrypoint: $*" >&2; }

# Tells dockerd (and AppArmor detection) it runs in a container.
export container=docker

# This process's cgroup v2 path (the "0::" line), as its cgroup namespace shows it.
v2_cgroup() {
	while IFS= read -r line; do
		case "$line" in 0::*) echo "${line#0::}" && return 0 ;; esac
	done </proc/self/cgroup
}

is_mountpoint() {
	while read -r _ _ _ _ mp _; do
		[ "$mp" = "$1" ] && return 0
	done </proc/self/mountinfo
	return 1
}

# AppArmor detection reads /sys/kernel/security.
if [ -d /sys/kernel/security ] && ! is_mountpoint /sys/kernel/security; then
	mount -t securityfs securityfs /sys/kernel/security 2>/dev/null ||
		say "could not mount securityfs (not privileged?)"
fi

# cgroup v2 with a private cgroup namespace: the container's cgroup is "/".
# Its processes must leave it (a cgroup with processes cannot delegate
# controllers to children), then its controllers are enabled for children
# so the nested containers' cgroups get them. Skipped unless the namespace
# is private: with the host's namespace this would move host processes.
if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ "$(v2_cgroup)" = / ]; then
	mkdir -p /sys/fs/cgroup/init
	n=0
	while :; do
		while read -r pid; do
			echo "$pid" >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
		done </sys/fs/cgroup/cgroup.procs
		read -r controllers </sys/fs/cgroup/cgroup.controllers || :
		failed=
		for c in $controllers; do
			echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || failed="$failed $c"
		done
		[ -z "$failed" ] && break
		n=$((n + 1))
		if [ "$n" -ge 20 ]; then
			say "warning: could not enable cgroup controllers:$failed"
			break
		fi
		sleep 0.1
	done
fi

# Like a systemd host: mounts made by nested containers propagate.
mount --make-rshared / 2>/dev/null || :

# dockerd's runtime state from an earlier run of this container (killed,
# then started again) is all stale, as after a reboot: a stale pid file
# (docker.pid, or containerd.pid naming a PID now in use) stops dockerd.
rm -rf /var/run/docker /run/docker /var/run/docker.pid /run/docker.pid

# Kernels without nf_tables support: fall back to iptables-legacy.
if [ -n "${DOCKER_IPTABLES_LEGACY:-}" ] ||
	{ ! iptables -nL >/dev/null 2>&1 && /usr/local/sbin/.iptables-legacy/iptables -nL >/dev/null 2>&1; }; then
	export PATH="/usr/local/sbin/.iptables-legacy:$PATH"
fi

# docker-init (tini) as PID 1 reaps the orphans of nested containers and
# forwards signals to dockerd; skip it when something else is PID 1
# (e.g. HostConfig.Init) to not nest two inits.
if [ "$$" = 1 ] && command -v docker-init >/dev/null 2>&1; then
	set -- docker-init -- "$@"
fi
exec "$@"
