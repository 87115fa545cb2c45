#!/usr/bin/env bash
# Installs what lnet's checks need beyond Rust itself (rustup's toolchain is the one
# precondition), on Debian, as root: nothing is downloaded when everything is there, so it
# costs a second on a machine already set up. Not root, it installs nothing and lists what
# is missing; the tests that need it are then counted as skipped.
#
#   scripts/deps.sh              everything scripts/test.sh runs (tests, quickstarts, benches)
#   scripts/deps.sh quickstart   only what scripts/quickstart.sh needs
#
# lnet speaks netlink and needs none of these at run time; they are for its tests and
# benchmarks, which check lnet's work with other programs.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

what=${1:-all}
case $what in
  all | quickstart) ;;
  *) echo "deps: unknown set '$what': the sets are 'all' (the default) and 'quickstart'" >&2; exit 2 ;;
esac

root=false
[ "$(id -u)" = 0 ] && root=true
missing=()
updated=false

# Debian packages, installed together with one `apt-get update`.
packages=()
want() { # want TOOL PACKAGE...: the packages, when TOOL is not on the PATH
  local tool=$1
  shift
  command -v "$tool" >/dev/null || packages+=("$@")
}
apt_install() {
  $updated || { apt-get update -qq; updated=true; }
  echo "deps: apt-get install $*"
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

want cc gcc libc6-dev # cargo links with it
want ip iproute2      # namespaces in the quickstart; tests compare lnet's links with ip's
want unshare util-linux # the quickstart's throwaway namespace; private test mounts
want python3 python3  # the quickstart's web server, and traffic inside the tests' sandboxes
if [ "$what" = all ]; then
  want nft nftables          # the nftables tests check what lnet programmed with nft
  want dig bind9-dnsutils    # the DNS tests ask a sandbox's resolver with dig
  want dnsperf dnsperf       # the DNS benchmark
  want nsenter util-linux    # the DNS benchmark runs dnsperf inside a sandbox
  # nft names protocols (tcp, udp) from /etc/protocols, and prints numbers without it; the
  # tests read the names. Every Debian install has it, a minimal image may not.
  [ -e /etc/protocols ] || packages+=(netbase)
fi
if [ ${#packages[@]} -gt 0 ]; then
  if $root; then
    # Sorted and unique, so that util-linux asked for twice is installed once.
    mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
    apt_install "${packages[@]}"
  else
    missing+=("Debian packages: ${packages[*]}")
  fi
fi

if [ "$what" = all ]; then
  # The plugin tests run a real dockerd (Debian's docker.io: dockerd, containerd, runc and
  # the docker CLI) with containers from a busybox image they build; the end-to-end tests
  # drive lnet's daemon with the same CLI. Only the programs are wanted: no Docker engine may
  # start on this machine (it would program the machine's own firewall), so the packages'
  # services are kept from starting while they install and are disabled after. The tests
  # start dockerd themselves, inside namespaces they make.
  if ! command -v dockerd >/dev/null || ! command -v busybox >/dev/null; then
    if $root; then
      made_policy=false
      if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# scripts/deps.sh: no service starts while packages install\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        made_policy=true
      fi
      apt_install docker.io busybox-static || { $made_policy && rm -f /usr/sbin/policy-rc.d; exit 1; }
      $made_policy && rm -f /usr/sbin/policy-rc.d
      if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now docker.service docker.socket containerd.service >/dev/null 2>&1 || true
      fi
    else
      missing+=("dockerd, the docker CLI and busybox (the Debian packages docker.io and busybox-static)")
    fi
  fi

  # The Docker SDK for Python drives the daemon in one end-to-end test: pip where the
  # python3 on the PATH has a pip that may install, else Debian's package (Debian's own
  # python3 refuses pip installs outside a virtual environment).
  if ! python3 -c 'import docker' >/dev/null 2>&1; then
    if $root; then
      echo "deps: the Docker SDK for Python"
      python3 -m pip install -q docker >/dev/null 2>&1 || apt_install python3-docker
      python3 -c 'import docker' || { echo "deps: python3 still cannot import docker" >&2; exit 1; }
    else
      missing+=("the Docker SDK for Python (pip install docker, or the Debian package python3-docker)")
    fi
  fi

  # The DNS benchmark compares lnet's resolver with podman's, aardvark-dns 2.1, in the same
  # run (Debian ships only 1.4): built from crates.io, in about two minutes. Only for root:
  # the benchmark needs root anyway.
  if ! command -v aardvark-dns >/dev/null; then
    if $root; then
      echo "deps: cargo install aardvark-dns 2.1.0"
      cargo install -q --locked aardvark-dns --version 2.1.0
    else
      missing+=("aardvark-dns (cargo install --locked aardvark-dns --version 2.1.0)")
    fi
  fi

  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "deps: rustup component add rustfmt clippy"
    rustup component add rustfmt clippy
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: not root, so not installed (what needs them is skipped):" >&2
  printf '  - %s\n' "${missing[@]}" >&2
fi
