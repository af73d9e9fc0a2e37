#!/bin/sh
# What the official docker:dind entrypoint does before dockerd starts when DOCKER_TLS_CERTDIR is set
# (its _tls_generate_certs): three RSA-4096 keys (CA, server, client), a self-signed CA, a server
# certificate with every address and name of the host as SANs, a client certificate, and a verify of
# each. Reproduced here step for step, so that scenario 1 can time it on this machine.
#
#   official-tls.sh DIR
set -eu

dir="$1"
days=825

san() {
	{
		ip -oneline address | awk '{ gsub(/\/.+$/, "", $4); print "IP:" $4 }'
		{
			cat /etc/hostname
			echo docker
			echo localhost
			hostname -f 2>/dev/null || hostname
			hostname -s 2>/dev/null || hostname
		} | sed 's/^/DNS:/'
	} | sort -u | xargs printf '%s,' | sed 's/,$//'
}

mkdir -p "$dir/ca" "$dir/server" "$dir/client"

openssl genrsa -out "$dir/ca/key.pem" 4096 2>/dev/null
openssl req -new -key "$dir/ca/key.pem" -out "$dir/ca/cert.pem" -subj '/CN=docker:dind CA' -x509 -days "$days"

openssl genrsa -out "$dir/server/key.pem" 4096 2>/dev/null
openssl req -new -key "$dir/server/key.pem" -out "$dir/server/csr.pem" -subj '/CN=docker:dind server'
printf '[ x509_exts ]\nsubjectAltName = %s\n' "$(san)" >"$dir/server/openssl.cnf"
openssl x509 -req -in "$dir/server/csr.pem" -CA "$dir/ca/cert.pem" -CAkey "$dir/ca/key.pem" -CAcreateserial \
	-out "$dir/server/cert.pem" -days "$days" -extfile "$dir/server/openssl.cnf" -extensions x509_exts 2>/dev/null
cp "$dir/ca/cert.pem" "$dir/server/ca.pem"
openssl verify -CAfile "$dir/server/ca.pem" "$dir/server/cert.pem" >/dev/null

openssl genrsa -out "$dir/client/key.pem" 4096 2>/dev/null
chmod 0644 "$dir/client/key.pem"
openssl req -new -key "$dir/client/key.pem" -out "$dir/client/csr.pem" -subj '/CN=docker:dind client'
printf '[ x509_exts ]\nextendedKeyUsage = clientAuth\n' >"$dir/client/openssl.cnf"
openssl x509 -req -in "$dir/client/csr.pem" -CA "$dir/ca/cert.pem" -CAkey "$dir/ca/key.pem" -CAcreateserial \
	-out "$dir/client/cert.pem" -days "$days" -extfile "$dir/client/openssl.cnf" -extensions x509_exts 2>/dev/null
cp "$dir/ca/cert.pem" "$dir/client/ca.pem"
openssl verify -CAfile "$dir/client/ca.pem" "$dir/client/cert.pem" >/dev/null
