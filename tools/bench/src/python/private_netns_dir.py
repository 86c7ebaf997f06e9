#!/usr/bin/python3
"""`private_netns_dir.py NETNS_PATH DIR PROGRAM [ARGS...]`: runs PROGRAM in the network namespace at
NETNS_PATH, with DIR as its /run/netns.

Why: Neutron's l3 agent deletes, after its first full sync, every `qrouter-*` namespace on the host
that is not one of its routers (NamespaceManager's stale namespace cleanup). On a shared machine
those may be someone else's. Run with its own /run/netns, it sees only the namespaces it makes.

How: the network namespace is entered first (its path is under the host's /run/netns). Then a mount
namespace of its own (a copy of the host's, propagation unchanged); there its /run/netns is made
private (the host's stays as it is) and the bench's DIR is bound over it. DIR is a shared mount the
bench made in the host (`mount --bind DIR DIR; mount --make-shared DIR`), so the bind is a peer of it:
each namespace the program mounts in its /run/netns appears in DIR on the host, where the bench reads
its rules (`nsenter --net=DIR/<name>`) and finally unmounts them (`umount --recursive DIR`).
"""

import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_PRIVATE = 1 << 18

libc = ctypes.CDLL("libc.so.6", use_errno=True)


def check(result, what):
    if result != 0:
        sys.exit(f"private_netns_dir.py: {what}: {os.strerror(ctypes.get_errno())}")


netns_path, netns_dir, program = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(netns_path, os.O_RDONLY)
check(libc.setns(fd, CLONE_NEWNET), f"setns {netns_path}")
os.close(fd)
check(libc.unshare(CLONE_NEWNS), "unshare the mount namespace")
check(libc.mount(b"none", b"/run/netns", None, MS_PRIVATE, None), "make /run/netns private")
check(libc.mount(netns_dir.encode(), b"/run/netns", None, MS_BIND, None), f"bind {netns_dir} on /run/netns")
os.execv(program, sys.argv[3:])
