#!/bin/sh
# setup-dind: entrypoint put into the dind container (/setup-dind/entrypoint.sh)
# before it starts, in place of the image's own. Prepares a privileged
# container for a nested dockerd, then runs the command: `dockerd ...`.
# POSIX sh; needs only mount, mkdir, rm, cat, ln and sleep (busybox is fine).
set -eu

say() { echo "setup-dind: $*" >&2; }

# dockerd and AppArmor detection look for it to know they run in a container.
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
		say "could not mount securityfs; continuing"
fi

# cgroup v2 with a private cgroup namespace (our cgroup is "/"): a cgroup
# that holds processes cannot give controllers to child cgroups, so move
# every process into a leaf "init" cgroup, then enable all controllers
# for children, where the nested dockerd puts its containers. Retried, as
# a process forked meanwhile (e.g. a docker exec) can land in "/" again.
# Never done in the host's cgroup namespace: it would move host processes.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	if [ "$(v2_cgroup)" = / ]; then
		mkdir -p /sys/fs/cgroup/init
		tries=0
		while :; do
			while read -r pid; do
				echo "$pid" >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
			done </sys/fs/cgroup/cgroup.procs
			read -r controllers </sys/fs/cgroup/cgroup.controllers || controllers=
			failed=
			for c in $controllers; do
				echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || failed="$failed $c"
			done
			[ -z "$failed" ] && break
			tries=$((tries + 1))
			if [ "$tries" -ge 20 ]; then
				say "could not enable cgroup controllers:$failed; continuing"
				break
			fi
			sleep 0.1
		done
	else
		say "cgroup v2 without a private cgroup namespace; nested containers may lack controllers"
	fi
fi

# As on a systemd host: mounts made under nested containers propagate.
mount --make-rshared / 2>/dev/null || :

# dockerd's runtime state from an earlier run of this container (killed,
# then started again) is all stale, as after a reboot: a stale pid file
# (docker.pid, or containerd.pid naming a PID now in use) stops dockerd.
rm -rf /var/run/docker /run/docker /var/run/docker.pid /run/docker.pid

# A kernel without nf_tables: use iptables-legacy if the image has it.
if command -v iptables >/dev/null 2>&1 && ! iptables -nL >/dev/null 2>&1; then
	legacy=
	if [ -x /usr/local/sbin/.iptables-legacy/iptables ]; then
		legacy=/usr/local/sbin/.iptables-legacy # docker:dind
	elif command -v iptables-legacy >/dev/null 2>&1; then
		legacy=/run/setup-dind/iptables-legacy
		mkdir -p "$legacy"
		for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
			f="$(command -v "${t%%-*}-legacy${t#"${t%%-*}"}" 2>/dev/null)" && ln -sf "$f" "$legacy/$t"
		done
	fi
	if [ -n "$legacy" ] && "$legacy/iptables" -nL >/dev/null 2>&1; then
		say "iptables (nf_tables) does not work here; using iptables-legacy"
		export PATH="$legacy:$PATH"
	fi
fi

# The server certificate names the container's addresses, known only once it runs: main puts it
# in then, with this marker last.
waited=0
while [ ! -e /setup-dind/certs/ready ]; do
	waited=$((waited + 1))
	if [ "$waited" -ge 1200 ]; then
		say "no server certificate after 60 s; giving up"
		exit 1
	fi
	sleep 0.05
done

exec "$@"
