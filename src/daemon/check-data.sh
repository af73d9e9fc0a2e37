#!/bin/sh
# setup-dind: checks a restored /var/lib/docker (put into the dind container beside entrypoint.sh, run
# by it before dockerd starts, after it dropped every top-level name it does not keep). The cache is
# anyone's who can write it: the data must be exactly of the form dockerd 26 and 28 write (the same) for
# the overlay2 graph driver, or dockerd would follow what it names (the layer store joins cache-id, link
# and lower to its own paths and chowns, removes and mounts what they lead to). Prints why and exits 1
# if not.
# Layer contents (overlay2/<id>/diff) are container content, not looked into. One find, one stat per
# batch of names, one awk: POSIX sh, busybox is fine.
# Usage: check-data.sh DIR
set -eu
cd "$1"
export LC_ALL=C QUOTING_STYLE=shell-always

# Every entry with its type, links, size and name; a symbolic link with its target, which busybox's
# and GNU's stat both print as `'name' -> 'target'`. A name of other bytes than printable ASCII, or
# with a quote, is refused unseen (a newline in it would make lines of its own). Not looked into:
# layer contents, overlayfs's scratch directories (the kernel empties them at each mount), the
# containers' layer mounts and the layer store's temporary files (the entrypoint empties both).
entry='%F|%h|%s|%n'
find . -xdev \( -name '*[! -~]*' -o -name "*'*" \) -prune -exec echo 'a name of odd bytes' \; -o \
	\( -path './overlay2/*/diff' -o -path './overlay2/*/work' -o -path ./image/overlay2/layerdb/mounts -o -path ./image/overlay2/layerdb/tmp \) \
	-prune -exec stat -c "$entry" {} + -o -type l -exec stat -c 'link|%N' {} + -o -exec stat -c "$entry" {} + |
	awk -v Q="'" '
function bad(why) {
	if (!failed) {
		gsub(/[^ -~]/, "?", why)
		print "the restored data is not of the form dockerd writes: " substr(why, 1, 300)
	}
	failed = 1
	exit 1
}
# Literal regular expressions and lengths only: busybox awk compiles a dynamic one at every use.
function hex64(x) { return length(x) == 64 && x ~ /^[0-9a-f]+$/ }
# A layer of the image store has a 64-hex id (-init for a container layer), one BuildKit commits a
# 25-character base-36 id; every layer has a link of 26 base-32 characters in overlay2/l.
function layerid(x) {
	return hex64(x) || (length(x) == 69 && substr(x, 65) == "-init" && hex64(substr(x, 1, 64))) ||
		(length(x) == 25 && x ~ /^[0-9a-z]+$/)
}
function shortid(x) { return length(x) == 26 && x ~ /^[A-Z2-7]+$/ }
function set(name, words,   w, i, n) { n = split(words, w, " "); for (i = 1; i <= n; i++) sets[name, w[i]] = 1 }
function in_set(name, x) { return (name, x) in sets }
# The one line of a metadata file that is all it holds (dockerd writes no newline), read only if it
# is no longer than dockerd ever writes.
function content(path, size, max,   line) {
	if (size > max) bad(path " is longer than dockerd writes it")
	line = ""
	if ((getline line < path) < 0) bad("cannot read " path)
	close(path)
	if (length(line) != size) bad(path " is not one line")
	return line
}
# A directory dockerd makes: p holds the n components of its path ("." first).
function known_dir(n, p) {
	if (n == 1) return 1
	if (n == 2) return in_set("top", p[2])
	if (p[2] == "overlay2")
		return (n == 3 && (p[3] == "l" || layerid(p[3]))) || (n == 4 && layerid(p[3]) && in_set("layer dir", p[4]))
	if (p[2] != "image" || p[3] != "overlay2") return 0
	if (n == 3) return 1
	if (n == 4) return in_set("store", p[4])
	if (n == 5) return in_set(p[4], p[5])
	if (n == 6) return (p[4] == "layerdb" && p[5] == "sha256" && hex64(p[6])) || (p[4] != "layerdb" && in_set(p[4], p[5]) && p[6] == "sha256")
	return n == 7 && p[4] == "imagedb" && p[5] == "metadata" && p[6] == "sha256" && hex64(p[7])
}
function known_file(n, p) {
	if (n == 2) return p[2] == "engine-id"
	if (p[2] == "overlay2") return n == 4 && layerid(p[3]) && in_set("layer file", p[4])
	if (p[2] != "image" || p[3] != "overlay2") return 0
	if (n == 4) return p[4] == "repositories.json"
	if (n == 7 && p[4] == "layerdb") return p[5] == "sha256" && hex64(p[6]) && in_set("layer metadata", p[7])
	if (n == 7) return in_set(p[4], p[5]) && p[5] != "metadata" && p[6] == "sha256" && hex64(p[7])
	return n == 8 && p[4] == "imagedb" && p[5] == "metadata" && p[6] == "sha256" && hex64(p[7]) && in_set("image metadata", p[8])
}
BEGIN {
	set("top", "image overlay2 lost+found")
	set("layer dir", "diff work merged")
	set("layer file", "link lower committed")
	set("store", "distribution imagedb layerdb")
	set("distribution", "diffid-by-digest v2metadata-by-diffid")
	set("imagedb", "content metadata")
	set("layerdb", "sha256")
	set("layer metadata", "cache-id diff parent size tar-split.json.gz")
	set("image metadata", "parent lastUpdated builtLocally")
}
{
	if (substr($0, 1, 5) == "link|") {
		type = "symbolic link"
		if (split(substr($0, 6), f, Q) != 5 || f[1] != "" || f[3] != " -> " || f[5] != "") bad("an entry of no known form: " $0)
		path = f[2]; target = f[4]
	} else if (match($0, /^[a-z ]+[|][0-9]+[|][0-9]+[|]/)) {
		split(substr($0, 1, RLENGTH - 1), f, "|")
		type = f[1]; links = f[2]; size = f[3]; target = ""
		path = substr($0, RLENGTH + 1)
	} else bad("an entry of no known form: " $0)
	if (path in seen) bad(path " twice")
	seen[path] = 1
	# Removed by the entrypoint, whatever they are.
	if (path == "./image/overlay2/layerdb/mounts" || path == "./image/overlay2/layerdb/tmp") next
	n = split(path, p, "/")
	if (p[2] == "lost+found" && (n > 2 || type != "directory")) bad("lost+found is not an empty directory")
	if (type == "directory") {
		if (!known_dir(n, p)) bad("a directory dockerd does not make: " path)
		if (n == 3 && p[2] == "overlay2" && p[3] != "l") layer[p[3]] = 1
		else if (n == 4 && p[2] == "overlay2" && p[4] == "diff") diff[p[3]] = 1
		else if (n == 6 && p[4] == "layerdb") chain[p[6]] = 1
	} else if (type == "regular file" || type == "regular empty file") {
		if (!known_file(n, p)) bad("a file dockerd does not make: " path)
		if (links != 1) bad(path " has " links " hard links")
		if (p[2] == "overlay2" && p[4] == "link") linkfile[p[3]] = size
		else if (p[2] == "overlay2" && p[4] == "lower") lowerfile[p[3]] = size
		else if (p[7] == "cache-id") cacheid[p[6]] = size
		else if (p[7] == "diff" || p[7] == "parent") digestfile[path] = size
		else if (p[7] == "size") sizefile[path] = size
		else if (p[4] == "committed" && size != 0) bad(path " is not empty")
		else if (n == 2) engineid = size
	} else if (type == "symbolic link") {
		if (n != 4 || p[2] != "overlay2" || p[3] != "l" || !shortid(p[4]))
			bad("a symbolic link dockerd does not make: " path " -> " target)
		if (split(target, t, "/") != 3 || t[1] != ".." || !layerid(t[2]) || t[3] != "diff")
			bad(path " does not link to a layer: " target)
		short[p[4]] = t[2]
	} else bad("a " type ": " path)
}
END {
	if (failed) exit 1
	if (!("." in seen)) bad("the data could not be listed")
	for (id in layer) {
		if (!(id in diff)) bad("overlay2/" id " has no diff directory")
		if (!(id in linkfile)) bad("overlay2/" id " has no link")
		s = content("./overlay2/" id "/link", linkfile[id], 26)
		if (!shortid(s) || short[s] != id) bad("overlay2/" id "/link does not name its link in overlay2/l")
		linked[id] = s
	}
	for (s in short)
		if (linked[short[s]] != s) bad("overlay2/l/" s " links to a layer whose link is not it")
	for (id in lowerfile) {
		# overlay2 stacks at most 128 layers.
		n = split(content("./overlay2/" id "/lower", lowerfile[id], 128 * 29), lower, ":")
		for (i = 1; i <= n; i++)
			if (substr(lower[i], 1, 2) != "l/" || !shortid(substr(lower[i], 3)) || !(substr(lower[i], 3) in short))
				bad("overlay2/" id "/lower names what is not a layer: " lower[i])
	}
	for (c in chain) {
		if (!(c in cacheid)) bad("layer " c " has no cache-id")
		id = content("./image/overlay2/layerdb/sha256/" c "/cache-id", cacheid[c], 64)
		if (!layerid(id) || substr(id, 65) == "-init" || !(id in layer)) bad("layer " c " names no layer of overlay2: " id)
	}
	for (file in digestfile) {
		d = content(file, digestfile[file], 71)
		if (substr(d, 1, 7) != "sha256:" || !hex64(substr(d, 8))) bad(file " is not a digest")
	}
	for (file in sizefile)
		if (content(file, sizefile[file], 20) !~ /^[0-9]+$/) bad(file " is not a size")
	if (engineid != "" && (engineid != 36 || content("./engine-id", 36, 36) !~ /^[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$/))
		bad("engine-id is not a UUID")
}'
