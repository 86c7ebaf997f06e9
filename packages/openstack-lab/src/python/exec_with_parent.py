#!/usr/bin/python3
"""`exec_with_parent.py [--signal NAME] <program> [args...]`: runs the program, signalled when its parent dies.

The lab's servers live in their own process group so that stop() can end them; then nothing ends
them if the test runner itself is killed (SIGKILL, an OOM). PR_SET_PDEATHSIG survives execve, so the
program gets the signal (SIGKILL unless --signal says otherwise, e.g. SIGINT for PostgreSQL's fast
shutdown) when the process that started this one exits; oslo.service's forked workers watch their
parent through a pipe and exit with it.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1

args = sys.argv[1:]
deathsig = signal.SIGKILL
if args[:1] == ["--signal"]:
    deathsig = signal.Signals[args[1]]
    args = args[2:]
parent = os.getppid()
if ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(deathsig)) != 0:
    sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
if os.getppid() != parent:  # the parent died before the guard was set
    sys.exit(1)
os.execv(args[0], args)
