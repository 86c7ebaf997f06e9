#!/usr/bin/python3
"""`exec_with_parent.py [--signal NAME | --group] <program> [args...]`: runs the program, signalled when its parent dies.

The lab's servers live in their own process group so that stop() can end them; then nothing ends
them if the test runner itself is killed (SIGKILL, an OOM). PR_SET_PDEATHSIG survives execve, so the
program gets the signal (SIGKILL unless --signal says otherwise, e.g. SIGINT for PostgreSQL's fast
shutdown) when the process that started this one exits; oslo.service's forked workers watch their
parent through a pipe and exit with it.

`--group`: for a program that forks the real server and does not pass the guard on (the
rabbitmq-server script starts beam.smp as a child): this process stays, runs the program in its own
process group and, when the parent dies, kills that whole group.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1

args = sys.argv[1:]
deathsig = signal.SIGKILL
group = False
if args[:1] == ["--group"]:
    group = True
    deathsig = signal.SIGUSR1
    args = args[1:]
elif args[:1] == ["--signal"]:
    deathsig = signal.Signals[args[1]]
    args = args[2:]
parent = os.getppid()
if ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(deathsig)) != 0:
    sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
if os.getppid() != parent:  # the parent died before the guard was set
    sys.exit(1)
if not group:
    os.execv(args[0], args)


def end_group(signum, frame):
    os.killpg(os.getpgrp(), signal.SIGKILL)


# Our process group is the lab's (it was started detached): killing it ends the program's children
# too. A SIGTERM to the group (the lab's stop) reaches the program itself; we wait for it to end.
signal.signal(signal.SIGUSR1, end_group)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = os.fork()
if child == 0:
    os.execv(args[0], args)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
