"""A small valid script the script tests change one line at a time, and helpers to do that.

(No tests here: the name keeps it with the other test_script files it serves.)
"""

from __future__ import annotations

from ceremony.script.errors import ScriptError, ScriptErrors
from ceremony.script.load import load_script_text
from ceremony.script.model import Script

FILE = "ceremony.toml"

BASE = """\
[ceremony]
id = "mini"
title = "Mini Ceremony"
version = "3"
administrator = "KGA"
previous = [
  "key_count",
  "livecd_sha256",
]

[roles.KGA]
title = "Key Generation Administrator"
duty = "facilitates"
min = 1
max = 1

[roles.SA]
title = "System Administrator"
duty = "operates"
min = 1
max = 1

[roles.KSO]
title = "Keystore Security Officer"
duty = "approves"
min = 2
max = 2

[roles.WI]
title = "Witness"
duty = "observes"
min = 0
max = 3
trusted = false
observer = true

[separation]
may_combine = [["KGA", "KSO"]]

[[materials]]
item = "Laptop"
quantity = 1

[[signers]]
name = "standby"
role = "standby"
host_key = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"

[[drives]]
label = "log"
title = "Key Gen Log"
serial = "0019 e000-faa9"

[[drives]]
label = "spare"
title = "Spare"

[[bags]]
label = "bag1"
title = "Master Copy"

[[policies]]
name = "default"

[[policies.keys]]
role = "KSK"
algorithm = "RSA/2048"
lifetime = "P1Y"

[[quorums]]
id = "gen"
role = "KSO"
m = 2
authorizes = 6
expires = "PT5M"

[[sections]]
title = "Start"
estimated = "PT10M"

[[sections.steps]]
n = 1
actor = "KGA"
text = "Sign in."
action = "signin"

[[sections.steps]]
n = 2
actor = "KGA"
text = "Record the bag serial."
action = "record"
format = "bag-serial"
bag = "bag1"

[[sections.steps]]
n = 3
actor = "SA"
text = "Plug in the log drive."
action = "drive.insert"
drive = "log"

[[sections.steps]]
n = 4
actor = "KGA"
text = "Check the log drive's serial."
action = "verify"
observe = "drive.serial"
drive = "log"
expect = "drive.log.serial"

[[sections]]
title = "Keys"
estimated = "PT20M"
note = "Fourteen months."

[[sections.steps]]
n = 5
actor = "KSO"
text = "Two KSOs approve."
action = "quorum"
quorum = "gen"
count = 2

[[sections.steps]]
n = 6
actor = "SA"
text = "Generate keys."
action = "hsm.generate"
quorum = ["gen"]
duration = "P14M"

[[sections.steps]]
n = 7
actor = "KSO"
text = "Accept the sealed bag."
action = "seal"
bag = "bag1"
serial = 2
contents = ["drive:log"]

[[sections.steps]]
n = 8
actor = "KGA"
text = "Sign off."
action = "signoff"
"""

def change(old: str, new: str, text: str = BASE) -> str:
    """`text` with the one occurrence of `old` replaced by `new`."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def add_step(step: str, text: str = BASE) -> str:
    """`text` with a `[[sections.steps]]` table inserted before the last step."""
    at = text.rindex("[[sections.steps]]")
    return f"{text[:at]}[[sections.steps]]\n{step.strip()}\n\n{text[at:]}"


def line_of(text: str, marker: str) -> int:
    """The 1-based line where `marker` first starts in `text`."""
    assert marker in text, marker
    return text[: text.index(marker)].count("\n") + 1


def load(text: str) -> Script:
    return load_script_text(text, FILE)


def errors_of(text: str) -> tuple[ScriptError, ...]:
    try:
        load(text)
    except ScriptErrors as e:
        return e.errors
    raise AssertionError("the script loaded")
