#!/bin/sh
# setup-dind: entrypoint put into the dind container (/setup-dind/entrypoint.sh)
# before it starts, in place of the image's own. Prepares a privileged
# container for a nested dockerd, then runs the command: `dockerd ...`.
# POSIX sh; needs only mount, mkdir, rm, cat, ln, sleep, and find, stat and awk to check restored
# data (check-data.sh, beside it): busybox is fine.
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

# The server certificate goes in before the container starts, or, when it must name the container's
# address on the default bridge (known only once it runs), right after; the marker comes last.
await_certificate() {
	waited=0
	while [ ! -e /setup-dind/certs/ready ]; do
		waited=$((waited + 1))
		if [ "$waited" -ge 1200 ]; then
			say "no server certificate after 60 s; giving up"
			exit 1
		fi
		sleep 0.05
	done
}

# Runs the command (dockerd) as a child, and on TERM stops it: the image usage recorder first
# (src/cache/usage.ts), whose open event stream dockerd would otherwise wait 5 s for. Then, once dockerd
# has exited, `after` (the data image's unmount).
after=:
run() {
	await_certificate
	"$@" &
	daemon=$!
	trap 'stop_daemon' TERM INT
	status=0
	while kill -0 "$daemon" 2>/dev/null; do
		status=0
		wait "$daemon" || status=$?
	done
	$after
	exit "$status"
}
stop_daemon() {
	[ -f /setup-dind/recorder.pid ] && kill "$(cat /setup-dind/recorder.pid)" 2>/dev/null || :
	kill -TERM "$daemon" 2>/dev/null || :
}

# The daemon's data: an ext4 filesystem in a file of the job's (see src/daemon/data-image.ts), loop-mounted
# at /var/lib/docker. Without that file the image's own /var/lib/docker volume is used.
data=/setup-dind/data
image="$data/docker.img"
lib=/var/lib/docker
[ -d "$data" ] || run "$@"

note() { echo "$*" >>"$data/events"; }

# What a saved state may hold, and so what a restored one keeps: what dockerd needs to find its images
# again (the image store and overlay2's layers) and nothing else. Not containerd's state (its restart
# monitor would start any container labelled to run), BuildKit's databases (which no shell can check),
# the job's containers, volumes, networks, plugins or swarm, nor other storage drivers' stores.
keep() {
	case "$1" in
	image | overlay2 | engine-id | lost+found) return 0 ;;
	esac
	return 1
}
prune() {
	for entry in "$lib"/* "$lib"/.[!.]* "$lib"/..?*; do
		[ -e "$entry" ] || [ -L "$entry" ] || continue
		keep "${entry##*/}" || rm -rf "$entry"
	done
	# Never through a link: rm -rf removes a link, not what it names.
	if [ -d "$lib/image" ] && [ ! -L "$lib/image" ]; then
		for entry in "$lib"/image/* "$lib"/image/.[!.]* "$lib"/image/..?*; do
			[ -e "$entry" ] || [ -L "$entry" ] || continue
			[ "${entry##*/}" = overlay2 ] || rm -rf "$entry"
		done
	fi
}
# Containers' layer mounts and the layer store's temporary files, emptied (as dockerd left them, the
# directories stay): only once the path to them is known to hold no link (check-data.sh, or dockerd's
# own data).
drop_mounts() {
	for dir in "$lib/image/overlay2/layerdb/mounts" "$lib/image/overlay2/layerdb/tmp"; do
		if [ -e "$dir" ] || [ -L "$dir" ]; then rm -rf "$dir" && mkdir -m 755 "$dir"; fi
	done
}

make_filesystem() {
	# No journal: a filesystem lives for one job and is saved only once cleanly unmounted, so it has
	# nothing to recover, and a restored one with a journal is refused (src/cache/image/ext4.ts). No reserved
	# blocks, an inode per 8 KiB (layers of small files; ext4.ts BYTES_PER_INODE), nothing a kernel of
	# the last ten years could not mount.
	set -- -t ext4 -q -F -b 4096 -m 0 -i 8192 -E lazy_itable_init=1,nodiscard
	mke2fs "$@" -O ^has_journal,^resize_inode,^orphan_file,^metadata_csum_seed "$image" 2>/dev/null ||
		mke2fs "$@" -O ^has_journal,^resize_inode "$image"
}

# nodev: a device node in the daemon's data (a layer's, a volume's) opens nothing in the dind container
# nor in a container whose root is a plain directory of it (vfs); overlay2's whiteouts still work.
# errors=remount-ro whatever the superblock says (panic would take the runner down). Not nosuid:
# setuid programs of vfs layers and of volumes would stop working.
# nobarrier: the filesystem lives for one job and its image is saved only once cleanly unmounted, so
# a flush buys nothing; with barriers, every fsync of the daemon's (and the unmount) made the loop
# device write back the whole image file, a restored one's gigabyte first.
mount_options=noatime,noinit_itable,nodev,errors=remount-ro,nobarrier

# A free loop device: a privileged container sees only the device nodes that existed when it was
# created, so make the node the kernel hands out if it is missing. Another container may take the
# same one first: try again.
free_loop() {
	dev="$(losetup -f 2>/dev/null)" || return 1
	[ -b "$dev" ] || mknod "$dev" b 7 "${dev#/dev/loop}" 2>/dev/null || :
}
mount_image() {
	if [ -n "$rw" ]; then
		# The device attached early; from now on the mount holds it.
		dev="$rw" rw= early=", attached while filled"
		status=0
		mount -t ext4 -o "$mount_options" "$dev" "$lib" 2>"$data/mount.err" || status=$?
		let_go "$dev"
		exec 3<&-
		return "$status"
	fi
	tries=0
	while [ "$tries" -lt 10 ]; do
		tries=$((tries + 1))
		free_loop || return 1
		mount -o "loop=$dev,$mount_options" "$image" "$lib" 2>"$data/mount.err" && return 0
		sleep 0.1
	done
	return 1
}

# Main writes a restored state into the image while this container starts (mode `filling`). Attaching
# a file makes the kernel write back its dirty pages first (0.6 s for a gigabyte just written, here):
# attached before it is filled, the image costs nothing. Two devices: a read-only one for e2fsck, whose
# flush then reaches no file (it fsyncs what it checked), and a read-write one to mount. Each is held
# open on a descriptor of this shell and detached at once: the kernel detaches it at its last close
# (the unmount, the end of e2fsck, or of this container, however it ends). Nothing reads either before
# main is done: then their caches are dropped, as whatever read them early (udev) saw the image unfilled.
ro= rw= attached= early=
attach_early() {
	[ -z "$attached" ] && command -v blockdev >/dev/null 2>&1 || return 0
	# Before attaching: a file main replaced since is never taken for the one it filled.
	attached="$(stat -c %d:%i "$image" 2>/dev/null)" || return 0
	# Main stops writing the image back once it reads this (data-image.ts writeBackUntilAttached).
	if hold_rw && hold_ro; then note attached; else release; fi
}
hold_rw() {
	free_loop && losetup "$dev" "$image" 2>/dev/null || return 1
	rw="$dev"
	[ -b "$rw" ] && exec 3<"$rw" && losetup -d "$rw"
}
hold_ro() {
	free_loop && losetup -r "$dev" "$image" 2>/dev/null || return 1
	ro="$dev"
	[ -b "$ro" ] && exec 4<"$ro" && losetup -d "$ro"
}
# A device not yet set to go at its last close (its detach failed) is detached while still held: once
# let go, its number may be another container's.
let_go() {
	[ -z "$1" ] || [ "$(cat "/sys/block/${1#/dev/}/loop/autoclear" 2>/dev/null)" = 1 ] || losetup -d "$1" 2>/dev/null || :
}
release_ro() {
	let_go "$ro"
	exec 4<&-
	ro=
}
release() {
	release_ro
	let_go "$rw"
	exec 3<&-
	rw= attached=
}
# Main's mode once it is done with the image, attaching the image meanwhile when it may.
await_data() {
	while :; do
		mode="$(cat "$data/mode" 2>/dev/null || :)"
		case "$mode" in
		new | restored | grown) break ;;
		filling) [ -f "$image" ] && attach_early ;;
		esac
		sleep 0.05
	done
	[ -n "$attached" ] || return 0
	# Kept only for the very file main filled, whole, as main left it.
	if [ "$mode" != new ] && [ "$(stat -c %d:%i "$image" 2>/dev/null)" = "$attached" ] &&
		size="$(stat -c %s "$image")" && [ "$(blockdev --getsize64 "$rw")" = "$size" ] &&
		[ "$(blockdev --getsize64 "$ro")" = "$size" ] &&
		blockdev --flushbufs "$rw" && blockdev --flushbufs "$ro"; then
		return 0
	fi
	release
}

# A fresh filesystem, or one mounted and pruned; the daemon's data a plain directory if neither works.
fresh_filesystem() {
	if ! make_filesystem >"$data/mkfs.log" 2>&1; then
		note "plain mke2fs failed: $(tail -n 3 "$data/mkfs.log" | tr '\n' ' ')"
		run "$@"
	fi
	echo restored >"$data/mode"
}
mount_filesystem() {
	if ! mount_image; then
		note "plain the filesystem image could not be mounted: $(cat "$data/mount.err")"
		run "$@"
	fi
	prune
}

# Seconds since boot, to a hundredth (busybox's date has no sub-second format): the steps' times go
# into the events, for main's log.
now() { read -r up _ </proc/uptime && echo "$up"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

if [ ! -e /dev/loop-control ] || ! command -v mke2fs >/dev/null 2>&1; then
	note "plain no loop device or mke2fs in the dind container"
	run "$@"
fi
waited="$(now)"
await_data
[ -f "$image" ] || run "$@"
began="$(now)"
steps=
# Each step's time, for the events.
step() { steps="$steps, $1 $(since "$2") s"; }
grow=
if [ "$mode" = grown ]; then mode=restored grow=1; fi
if [ "$mode" = restored ]; then
	at="$(now)"
	if ! e2fsck -fn "${ro:-$image}" >"$data/check.log" 2>&1; then
		# Anyone who can write the cache could have made this image: the kernel never sees one that
		# e2fsck does not find entirely consistent.
		note "discarded the restored filesystem failed e2fsck's check: $(tail -n 3 "$data/check.log" | tr '\n' ' ')"
		mode=new
	fi
	step e2fsck "$at"
fi
release_ro
if [ "$mode" = new ]; then release; fi
if [ -n "$grow" ] && [ "$mode" = restored ]; then
	# Main made the file larger: this runner has more room than the filesystem was saved with.
	at="$(now)"
	resize2fs -f "${rw:-$image}" >"$data/resize.log" 2>&1 || note "not grown: $(tail -n 1 "$data/resize.log")"
	step resize "$at"
fi
if [ "$mode" = new ]; then fresh_filesystem "$@"; fi
at="$(now)"
mount_filesystem "$@"
step mount "$at"
checked=
if [ "$mode" = restored ]; then
	# Anything of a form dockerd never writes could lead it outside its data: a fresh filesystem instead.
	check_began="$(now)"
	if why="$(sh /setup-dind/check-data.sh "$lib")"; then
		drop_mounts
		checked=", checked in $(since "$check_began") s"
	else
		note "discarded ${why:-the restored data could not be checked}"
		mode=new early=
		# dockerd never runs on what was refused.
		umount "$lib" || exit 1
		fresh_filesystem "$@"
		mount_filesystem "$@"
	fi
fi
note "mounted in $(since "$began") s ($mode$early$checked; waited for main $(awk -v a="$waited" -v b="$began" 'BEGIN { printf "%.2f", b - a }') s$steps)"
unmount() {
	prune
	drop_mounts
	if umount "$lib"; then note unmounted; fi
}
after=unmount
run "$@"
