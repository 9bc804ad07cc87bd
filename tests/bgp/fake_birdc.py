"""A scripted birdc: records its argv and answers from a table, so no daemon is needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

FAKE_BIRDC = """#!{python}
import json, pathlib, sys
here = pathlib.Path(__file__).parent
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
command = " ".join(sys.argv[4:])
replies = json.loads((here / "replies.json").read_text())
sys.stdout.write(replies.get(command, "0001 BIRD 2.0.12 ready.\\n"))
"""

SHOW_PROTOCOLS = (
    "0001 BIRD 2.0.12 ready.\n"
    "2002-Name       Proto      Table      State  Since         Info\n"
    "1002-device1    Device     ---        up     2026-01-01 10:00:00  \n"
    "     Mesh_198_18_0_1 BGP   ---        up     2026-01-01 10:00:01  Established   \n"
    "     Mesh_198_18_0_3 BGP   ---        start  2026-01-01 10:00:01  Connect       Socket: Connection refused\n"
    "0000 \n"
)
RECONFIGURED = "0001 BIRD 2.0.12 ready.\n0002-Reading configuration from /x\n0003 Reconfigured\n"
PARSE_ERROR = "0001 BIRD 2.0.12 ready.\n0002-Reading configuration from /x\n8002 /x:3:1 syntax error\n"


class FakeBirdc:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "birdc"
        self.path.write_text(FAKE_BIRDC.format(python=sys.executable))
        self.path.chmod(0o755)
        self.reply("configure", RECONFIGURED)
        self.reply("show protocols", SHOW_PROTOCOLS)

    def reply(self, command: str, text: str) -> None:
        replies_file = self.dir / "replies.json"
        replies = json.loads(replies_file.read_text()) if replies_file.exists() else {}
        replies[command] = text
        replies_file.write_text(json.dumps(replies))

    def calls(self) -> list[list[str]]:
        log = self.dir / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def commands(self) -> list[str]:
        return [" ".join(call[3:]) for call in self.calls()]
