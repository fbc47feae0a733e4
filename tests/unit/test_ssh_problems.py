"""What an ssh failure of the docker CLI means, in one line (builders.sshconf.ssh_problem)."""

from __future__ import annotations

from deployq.builders.sshconf import ssh_problem

CLI_ERROR = (  # what `docker info` prints when its ssh fails (one JSON line, then more)
    '{"ServerErrors":["error during connect: ... command [ssh -l builder -- arm1 docker '
    'system dial-stdio] has exited with exit status 255 ...: stderr=ssh: %s\\r\\n"]}'
)


def test_an_unknown_host_name() -> None:
    text = CLI_ERROR % "Could not resolve hostname arm1: Name or service not known"
    assert ssh_problem(text, "ssh://builder@arm1", None) == (
        "ssh: cannot resolve the host name arm1: correct the server's --docker-host"
    )


def test_a_refused_or_unanswered_connection() -> None:
    refused = CLI_ERROR % "connect to host 10.0.0.7 port 2222: Connection refused"
    assert ssh_problem(refused, "ssh://b@10.0.0.7:2222", None) == (
        "ssh: 10.0.0.7 refused the connection on port 2222: is sshd running there?"
    )
    silent = CLI_ERROR % "connect to host b3 port 22: Connection timed out"
    assert ssh_problem(silent, "ssh://b@b3", None) == (
        "ssh: no answer from b3 on port 22: check the address and firewall"
    )


def test_other_failures_are_not_ssh_problems() -> None:
    assert ssh_problem("Cannot connect to the Docker daemon", "ssh://b@b3", None) is None
