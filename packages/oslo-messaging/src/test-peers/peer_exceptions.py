"""An exception module a Python peer allows to be rebuilt from remote failures (allowed_remote_exmods)."""


class AgentBusy(Exception):
    pass
