"""Multi-host training with MXNet's parameter server, as the SageMaker MXNet containers do it.

On hosts[0] a scheduler, on every host a server and a worker (this process, kvstore `dist_sync`).
The roles find each other through DMLC_* variables: DMLC_PS_ROOT_URI is hosts[0]'s address,
DMLC_NUM_SERVER = DMLC_NUM_WORKER = the number of hosts. Workers train on their own shard
(kv.rank of kv.num_workers); only hosts[0] writes the model.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from magiccards.errors import UserError

from .reporting import say

PORT = 8000
RESOLVE_SECONDS = 900


def _resolve(host: str) -> str:
    deadline = time.monotonic() + RESOLVE_SECONDS
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError:
            if time.monotonic() > deadline:
                raise UserError(f"host {host} did not resolve within {RESOLVE_SECONDS} s; check the job's network") from None
            time.sleep(1)


class ParameterServer:
    """Starts the scheduler/server roles of this host and configures this process as a worker."""

    def __init__(self, hosts: list[str], current_host: str, interface: str | None = None):
        self.hosts, self.current_host = sorted(hosts), current_host
        self.env = {"DMLC_PS_ROOT_URI": _resolve(self.hosts[0]), "DMLC_PS_ROOT_PORT": str(PORT),
                    "DMLC_NUM_SERVER": str(len(self.hosts)), "DMLC_NUM_WORKER": str(len(self.hosts))}
        if interface:
            self.env["DMLC_INTERFACE"] = interface
        self.procs: list[subprocess.Popen] = []

    def start(self):
        """Start the roles, then create the worker's kvstore (blocks until every role has joined)."""
        import mxnet as mx
        roles = (["scheduler"] if self.current_host == self.hosts[0] else []) + ["server"]
        for role in roles:
            env = dict(os.environ, **self.env, DMLC_ROLE=role)
            self.procs.append(subprocess.Popen([sys.executable, "-c", "import mxnet"], env=env))
        os.environ.update(self.env, DMLC_ROLE="worker")
        say(f"{self.current_host}: parameter server roles {', '.join(roles)} started; "
            f"scheduler at {self.env['DMLC_PS_ROOT_URI']}:{PORT}")
        kv = mx.kv.create("dist_sync")
        say(f"{self.current_host}: worker {kv.rank} of {kv.num_workers}")
        return kv

