#!/bin/bash
# dockerd.sh: Debian's dockerd 20.10 (package docker.io) for lnet's tests, shut away from the
# machine:
#   * the network namespace of whoever runs this script (the test's own: dockerd, its
#     containerd, the shims and the containers' host sides live there, with lnet);
#   * a mount namespace of its own (kept at $D/ns/mnt): a private tmpfs over /run and
#     /etc/docker, so that the machine's /run/containerd, /run/docker/plugins and
#     /etc/docker are never seen nor written; plugin sockets go in $D/plugins, which dockerd
#     sees as /run/docker/plugins;
#   * all state under $D; cgroups under /dockerlab-$ID;
#   * $D/exec (the exec root) is a shared bind mount, so the containers' namespaces
#     ($D/exec/netns/<id>, the plugin protocol's SandboxKey) can be entered from outside.
#
#   DL_LAB=DIR DL_ID=x dockerd.sh start [dockerd flags]   e.g. --live-restore
#   DL_LAB=DIR DL_ID=x dockerd.sh import                  a busybox rootfs as image bb:1
#   DL_LAB=DIR DL_ID=x dockerd.sh stop                    SIGTERM dockerd alone
#   DL_LAB=DIR DL_ID=x dockerd.sh restart [flags]         dockerd again, same namespaces
#   DL_LAB=DIR DL_ID=x dockerd.sh cleanup                 end every process by PID, unmount, remove
set -u

LAB=${DL_LAB:?DL_LAB: the directory for the state of dockerd}
ID=${DL_ID:?DL_ID: a name for this dockerd}
D=$LAB/inst-$ID
SOCK=$D/docker.sock
CGP=/dockerlab-$ID
DOCKER=${DL_DOCKER:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker )}
STORAGE=${DL_STORAGE:-overlay2}        # overlay2 on ext4 /tmp; use vfs or DL_DATA_TMPFS=1 if /tmp is overlayfs

dk() { "$DOCKER" -H "unix://$SOCK" "$@"; }

# alive PID: process exists and is not a zombie
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# wait_gone PID SECONDS
wait_gone() { local i; for ((i = 0; i < $2 * 10; i++)); do alive "$1" || return 0; sleep 0.1; done; return 1; }

# term_kill PID...: SIGTERM, wait 10s, SIGKILL
term_kill() {
    local p
    for p in "$@"; do alive "$p" && kill -TERM "$p" 2>/dev/null; done
    for p in "$@"; do wait_gone "$p" 10 || { echo "SIGKILL $p" >&2; kill -KILL "$p" 2>/dev/null; wait_gone "$p" 5; }; done
}

dl_setup() {
    if [ -e "$D" ]; then echo "$D exists; run cleanup first" >&2; return 1; fi
    mkdir -p "$D"/{data,exec,plugins,run-containerd,etc-docker,ns} || return 1
    echo '{}' > "$D/daemon.json"
    # private bind mount to hold the persistent mount-namespace file
    mount --bind "$D/ns" "$D/ns" && mount --make-private "$D/ns" || return 1
    touch "$D/ns/mnt"
    # exec-root: shared bind mount -> mounts made by dockerd below it propagate to the machine
    mount --bind "$D/exec" "$D/exec" && mount --make-shared "$D/exec" || return 1
    # Pinned to one CPU: on Linux 6.18 binding a new mount namespace's file refuses now and
    # then (EINVAL) when the process moved between CPUs while making it; each CPU is tried.
    local cpu made=false
    for cpu in $(seq 0 $(( $(nproc) - 1 ))) 0 0 0; do
        if taskset -c "$cpu" unshare --mount="$D/ns/mnt" --propagation unchanged true 2>/dev/null; then
            made=true
            break
        fi
    done
    $made || { echo "dockerd.sh: cannot make a mount namespace at $D/ns/mnt" >&2; return 1; }
    # inside the new mount ns: make every shared mount private except $D/exec, then mask /run.
    # A mount gone between the listing and its turn (a container's namespace of another
    # test's dockerd, unmounted meanwhile) needs nothing.
    nsenter --mount="$D/ns/mnt" sh -ec '
        D=$1
        awk -v keep="$D/exec" "{for(i=7;\$i!=\"-\";i++) if (\$i ~ /^shared:/) {if (\$5!=keep) print \$5; break}}" \
            /proc/self/mountinfo | while read -r mp; do
                mp=$(printf "%b" "$mp")
                mount --make-private "$mp" 2>/dev/null || ! mountpoint -q "$mp"
            done
        mount -t tmpfs -o mode=755 dockerlab-run /run
        mkdir -p /run/docker/plugins /run/containerd
        mount --bind "$D/plugins" /run/docker/plugins
        mount --bind "$D/run-containerd" /run/containerd
        if [ -d /etc/docker ]; then mount --bind "$D/etc-docker" /etc/docker; fi
        if [ "${2:-0}" = 1 ]; then mount -t tmpfs dockerlab-data "$D/data"; fi
    ' sh "$D" "${DL_DATA_TMPFS:-0}" || return 1
}

dl_start_daemon() {
    (cd / && exec nsenter --mount="$D/ns/mnt" \
        dockerd --config-file "$D/daemon.json" \
        --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/dockerd.pid" \
        -H "unix://$SOCK" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        --storage-driver "$STORAGE" --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "$CGP" \
        "$@" >> "$D/dockerd.log" 2>&1) &
    echo $! > "$D/dockerd.bgpid"    # == dockerd's pid (nsenter execs dockerd, no fork)
    local i
    for ((i = 0; i < 300; i++)); do
        if [ -S "$SOCK" ] && dk version >/dev/null 2>&1; then return 0; fi
        alive "$(cat "$D/dockerd.bgpid")" || { echo "dockerd died, see $D/dockerd.log" >&2; return 1; }
        sleep 0.1
    done
    echo "dockerd not ready after 30s" >&2; return 1
}

dl_start() { dl_setup && dl_start_daemon "$@"; }

dl_stop_daemon() {   # SIGTERM dockerd (with --live-restore containers keep running)
    local pid
    pid=$(cat "$D/dockerd.pid" 2>/dev/null || cat "$D/dockerd.bgpid" 2>/dev/null) || return 0
    [ -n "$pid" ] && alive "$pid" && term_kill "$pid"
    wait "$pid" 2>/dev/null    # reap if it is our child
    # otherwise PID 1 reaps the zombie; wait so that pgrep shows nothing afterwards
    local i; for ((i = 0; i < 50; i++)); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    return 0
}

dl_import() {   # build busybox rootfs tar once, import as bb:1
    if [ ! -f "$LAB/rootfs.tar" ]; then
        rm -rf "$LAB/rootfs" && mkdir -p "$LAB/rootfs"/{bin,etc,proc,sys,dev,tmp} &&
        cp "$(command -v busybox)" "$LAB/rootfs/bin/busybox" &&   # busybox-static's
        chroot "$LAB/rootfs" /bin/busybox --install -s /bin &&
        tar -C "$LAB/rootfs" -cf "$LAB/rootfs.tar" . || return 1
    fi
    dk import "$LAB/rootfs.tar" bb:1
}

cleanup() {
    local pids p f mp i
    # 1. remove containers while the daemon still answers
    if [ -S "$SOCK" ] && timeout 10 "$DOCKER" -H "unix://$SOCK" version >/dev/null 2>&1; then
        pids=$(dk ps -aq)
        [ -n "$pids" ] && timeout 30 "$DOCKER" -H "unix://$SOCK" rm -f $pids >/dev/null
    fi
    # 2. dockerd: SIGTERM by pid, wait, SIGKILL
    dl_stop_daemon
    # 3. container processes left over (live-restore / crashed daemon): found via our cgroup parent
    pids=$(find /sys/fs/cgroup -path "*$CGP/*" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [ -n "$pids" ] && { kill -KILL $pids 2>/dev/null; for p in $pids; do wait_gone "$p" 5; done; }
    # 4. everything still in our netns (managed containerd, containerd-shim-runc-v2) plus
    #    shims found by their -address argument (in case the netns is already gone)
    local me; me=$(readlink /proc/self/ns/net)
    pids=$( { for f in /proc/[0-9]*/ns/net; do
                  p=${f#/proc/}; p=${p%/ns/net}
                  [ "$p" != $$ ] && [ "$p" != "$BASHPID" ] || continue
                  # dockerd's: this namespace's processes started from $D (containerd, shims)
                  [ "$(readlink "$f" 2>/dev/null)" = "$me" ] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q -- "$D/" && echo "$p"
              done
              for f in /proc/[0-9]*/cmdline; do
                  case "$(tr '\0' ' ' 2>/dev/null < "$f")" in
                      *containerd-shim*"-address $D/exec/containerd/containerd.sock"*)
                          p=${f#/proc/}; echo "${p%/cmdline}" ;;
                  esac
              done; } | sort -u)
    [ -n "$pids" ] && term_kill $pids
    # zombies of killed shims are reaped by PID 1; give it a moment so pgrep shows nothing
    for p in $pids; do for ((i = 0; i < 50; i++)); do [ -e "/proc/$p" ] || break; sleep 0.1; done; done
    # 5. unmount: persistent mount ns handle (its mounts vanish with it), then host mounts under $D
    grep -q " $D/ns/mnt " /proc/self/mountinfo && umount "$D/ns/mnt"
    for mp in $(awk -v d="$D" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount "$mp" 2>/dev/null || umount -l "$mp"
    done
    # 6. cgroups (depth first; only empty dirs can be removed)
    find /sys/fs/cgroup -depth -type d -path "*$CGP*" -exec rmdir {} \; 2>/dev/null
    # 7. files (refuse if anything is still mounted below $D)
    if awk -v d="$D" '$5 == d || index($5, d "/") == 1 {f = 1} END {exit !f}' /proc/self/mountinfo; then
        echo "still mounted under $D, not removing" >&2; return 1
    fi
    rm -rf --one-file-system "$D"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cmd=${1:-}; shift || true
    case $cmd in
        start) dl_start "$@" ;;
        restart) dl_start_daemon "$@" ;;
        import) dl_import ;;
        stop) dl_stop_daemon ;;
        cleanup) cleanup ;;
        *) echo "usage: $0 start|import|stop|restart|cleanup [dockerd flags]" >&2; exit 2 ;;
    esac
fi
