"""Each kind of script error, from a minimal bad script, with its exact file, line and key path.

Every case changes one thing in the valid sample script and expects exactly the listed errors (so a
rule that stops firing, fires at the wrong place, or drags other errors along, fails the test).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.test_script_samples import BASE, FILE, add_step, change, errors_of, line_of


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    expected: tuple[tuple[str, str, str], ...]  # (marker for the line, keypath, message)


def case(id: str, text: str, *expected: tuple[str, str, str]) -> Case:
    return Case(id, text, expected)


STEP3 = "[[sections.steps]]\nn = 3"
S0, S1 = "sections[0].steps", "sections[1].steps"
TOP_KEYS = ("ceremony, roles, separation, materials, signers, drives, bags, passwords, policies, "
            "quorums, sections")
ACTING = "expected one of KGA, KSO, SA"
ALL_ROLES = "expected one of KGA, KSO, SA, WI"
HOST_KEY_LINE = 'host_key = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"\n'
LOG_LABEL_LINE = line_of(BASE, 'label = "log"')
START_TITLE_LINE = line_of(BASE, 'title = "Start"')
STEP2_LINE = line_of(BASE, "n = 2\nactor")


def step_8(step: str, text: str = BASE) -> str:
    """`text` with `step` (numbered 8) added before the last step, which becomes step 9."""
    return add_step(step, change("n = 8", "n = 9", text))


def second_quorum(q: str, role: str, m: int, authorizes: int, text: str = BASE) -> str:
    header = '[[sections]]\ntitle = "Start"'
    return change(header, f'[[quorums]]\nid = "{q}"\nrole = "{role}"\nm = {m}\n'
                  f'authorizes = {authorizes}\nexpires = "PT5M"\n\n{header}', text)


#: a second bag, declared and never sealed
BAG2 = change("[[policies]]", '[[bags]]\nlabel = "bag2"\ntitle = "Spare"\n\n[[policies]]')
#: a hand-over of bag1 as step 7, before the seal (now step 8) that seals it
HANDOVER_FIRST = change("[[sections.steps]]\nn = 7\n",
                        '[[sections.steps]]\nn = 7\nactor = "KGA"\ntext = "Take."\n'
                        'action = "handover"\nbag = "bag1"\n\n[[sections.steps]]\nn = 8\n',
                        change("n = 8", "n = 9"))
GEN2 = change('quorum = ["gen"]', 'quorum = ["gen2"]', second_quorum("gen2", "SA", 1, 6))
LATE = step_8('n = 8\nactor = "KSO"\ntext = "Late."\naction = "quorum"\nquorum = "late"\n'
              "count = 1",
              change('quorum = ["gen"]', 'quorum = ["gen", "late"]',
                     second_quorum("late", "KSO", 1, 6)))
NO_POLICIES = change('[[policies]]\nname = "default"\n\n[[policies.keys]]\nrole = "KSK"\n'
                     'algorithm = "RSA/2048"\nlifetime = "P1Y"\n\n', "")
TWO_SIGNERS = change("[[drives]]\nlabel = \"log\"",
                     '[[signers]]\nname = "active"\n\n[[drives]]\nlabel = "log"')


CASES = [
    # -- unknown keys, missing keys, wrong types ------------------------------------------------
    case("unknown top-level key", "colour = 1\n" + BASE,
         ("colour", "colour", f"unknown key 'colour' (expected one of {TOP_KEYS})")),
    case("unknown step key", change('n = 3\nactor = "SA"', 'n = 3\nacter = "SA"'),
         ("acter", f"{S0}[2].acter", "unknown key 'acter' (did you mean 'actor'?)"),
         (STEP3, f"{S0}[2].actor", "required key is missing (expected string `[A-Z][A-Z0-9]*`)")),
    case("unknown key in a named table", change('duty = "operates"', 'duty = "operates"\nhue = 2'),
         ("hue", "roles.SA.hue", "unknown key 'hue' (expected one of title, duty, min, max, "
          "trusted, observer)")),
    case("missing required key", change('text = "Plug in the log drive."\n', ""),
         (STEP3, f"{S0}[2].text", "required key is missing (expected string)")),
    case("missing required table", change("[ceremony]", "[other]"),
         ("[other]", "other", f"unknown key 'other' (expected one of {TOP_KEYS})"),
         ("[other]", "ceremony", "required key is missing (expected table ([ceremony]))")),
    case("boolean is not an integer", change("n = 3", "n = true"),
         ("n = true", f"{S0}[2].n", "expected an integer, got a boolean (true)")),
    case("string is not an integer", change("max = 3", 'max = "3"'),
         ('max = "3"', "roles.WI.max", "expected an integer, got a string ('3')")),
    case("float is not an integer", change("quantity = 1", "quantity = 1.0"),
         ("quantity", "materials[0].quantity", "expected an integer, got a float (1.0)")),
    case("integer is not a string", change('version = "3"', "version = 3"),
         ("version", "ceremony.version", "expected a string, got an integer (3)")),
    case("integer is not a boolean", change("observer = true", "observer = 1"),
         ("observer", "roles.WI.observer",
          "expected a boolean (true or false), got an integer (1)")),
    case("blank string", change('text = "Sign off."', 'text = "  "'),
         ('text = "  "', f"{S1}[3].text", "expected a non-empty string")),
    case("table where an array of tables belongs", change("[[materials]]", "[materials]"),
         ("[materials]", "materials", "expected an array of tables ([[materials]]), got a table")),
    case("array element of the wrong kind", change('  "livecd_sha256",', '  "Livecd",'),
         ('"Livecd"', "ceremony.previous[1]",
          "'Livecd' is not a record key (expected [a-z][a-z0-9_]*)")),
    case("array listing a value twice", change('  "livecd_sha256",', '  "key_count",'),
         ('  "key_count",\n]', "ceremony.previous[1]",
          "'key_count' is listed twice (also at index 0)")),
    # -- durations, ids, labels, formats --------------------------------------------------------
    case("bad duration", change('estimated = "PT10M"', 'estimated = "10 minutes"'),
         ("10 minutes", "sections[0].estimated",
          "'10 minutes' is not an ISO 8601 duration (expected e.g. PT15M, P14M, P1Y)")),
    case("zero duration", change('expires = "PT5M"', 'expires = "PT0S"'),
         ("PT0S", "quorums[0].expires", "'PT0S' is a zero duration")),
    case("bad ceremony id", change('id = "mini"', 'id = "Mini_1"'),
         ('"Mini_1"', "ceremony.id",
          "'Mini_1' is not a ceremony id (expected [a-z0-9][a-z0-9-]*)")),
    case("bad role name", change("[roles.WI]", "[roles.Wi]"),
         ("[roles.Wi]", "roles.Wi", "'Wi' is not a role name (expected [A-Z][A-Z0-9]*)")),
    case("bad drive label", change('label = "spare"', 'label = "Spare Drive"'),
         ('"Spare Drive"', "drives[1].label",
          "'Spare Drive' is not a drive label (expected [a-z0-9][a-z0-9-]*)")),
    case("host key with a non-canonical last character", change("E5SY8", "E5SY9"),
         ("E5SY9", "signers[0].host_key", "'SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY9' "
          "is not a valid host-key (expected `SHA256:` and 43 base64 characters as OpenSSH prints "
          "it, or 16 colon-separated hex bytes (legacy MD5, optionally `MD5:`-prefixed; "
          "normalised to `MD5:` + lower case))")),
    case("host key pinned to a previous key the ceremony does not list",
         change('host_key = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"',
                'host_key = "previous.signer_key"'),
         ("previous.signer_key", "signers[0].host_key",
          "'signer_key' is not listed in ceremony.previous "
          "(expected one of key_count, livecd_sha256)")),
    case("host key pinned to a malformed previous reference",
         change('host_key = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"',
                'host_key = "previous.Signer-Key"'),
         ("previous.Signer-Key", "signers[0].host_key",
          "'previous.Signer-Key' is not a previous-ceremony reference (expected previous.KEY, "
          "KEY lower-case letters, digits and _)")),
    case("bad drive serial", change('serial = "0019 e000-faa9"', 'serial = "0019/e000"'),
         ("0019/e000", "drives[0].serial", "'0019/e000' is not a valid usb-serial (expected "
          "letters and digits, spaces and dashes ignored, at most 126; upper-cased)")),
    case("bad algorithm", change('"RSA/2048"', '"RSA/1536"'),
         ("RSA/1536", "policies[0].keys[0].algorithm",
          "'RSA/1536' is not one of RSA/1024, RSA/2048, RSA/4096, ECDSA/P-256, ECDSA/P-384")),
    # -- roles and separation -------------------------------------------------------------------
    case("role min above max", change("min = 0\nmax = 3", "min = 4\nmax = 3"),
         ("min = 4", "roles.WI.min", "min 4 is more than max 3 for WI")),
    case("administrator not a role", change('administrator = "KGA"', 'administrator = "KG"'),
         ("administrator", "ceremony.administrator", f"'KG' is not a declared role ({ALL_ROLES})")),
    case("administrator an observer", change('administrator = "KGA"', 'administrator = "WI"'),
         ("administrator", "ceremony.administrator",
          f"'WI' is an observer role, and observers never act ({ACTING})")),
    case("may_combine naming an unknown role", change('[["KGA", "KSO"]]', '[["KGA", "DSO"]]'),
         ("may_combine", "separation.may_combine[0][1]",
          f"'DSO' is not a declared role ({ALL_ROLES})")),
    case("may_combine pair twice", change('[["KGA", "KSO"]]', '[["KGA", "KSO"], ["KSO", "KGA"]]'),
         ("may_combine", "separation.may_combine[1]", "the pair KSO, KGA is listed twice")),
    case("may_combine role with itself", change('[["KGA", "KSO"]]', '[["KGA", "KGA"]]'),
         ("may_combine", "separation.may_combine[0][1]",
          "'KGA' is listed twice (also at index 0)")),
    # -- step numbering, actors, actions ---------------------------------------------------------
    case("actor not a declared role", change('"SA"\ntext = "Plug', '"KS0"\ntext = "Plug'),
         ("KS0", f"{S0}[2].actor", f"'KS0' is not a declared role ({ALL_ROLES})")),
    case("actor an observer", change('"SA"\ntext = "Plug', '"WI"\ntext = "Plug'),
         ('"WI"\ntext', f"{S0}[2].actor",
          f"'WI' is an observer role, and observers never act ({ACTING})")),
    case("duplicate step number", change("n = 3", "n = 2"),
         ('n = 2\nactor = "SA"', f"{S0}[2].n",
          f"duplicate step number 2 (first at line {STEP2_LINE})")),
    case("step numbers not increasing", change("n = 5", "n = 50"),
         ("n = 6", f"{S1}[1].n",
          "step 6 comes after step 50 (expected numbers that increase through the file)")),
    case("unknown action", change('action = "signoff"', 'action = "hsm.destroy"'),
         ("hsm.destroy", f"{S1}[3].action", "'hsm.destroy' is not an action: acknowledge, signin, "
          "record, verify, hsm.fingerprint, hsm.list, hsm.purge, hsm.generate, hsm.backup, "
          "hsm.restore, hsm.kek, kek.share, quorum, drive.insert, drive.copy, drive.verify, "
          "drive.eject, seal, handover, unseal, transcript, signoff")),
    case("parameter not allowed for the action",
         change('action = "signoff"', 'action = "signoff"\ndrive = "log"  # here'),
         ('drive = "log"  # here', f"{S1}[3].drive",
          "'drive' is not a parameter of action 'signoff' (it takes cosigners)")),
    case("parameter missing for the action", change('format = "bag-serial"\nbag = "bag1"\n', ""),
         ("[[sections.steps]]\nn = 2", f"{S0}[1].format", "action 'record' requires 'format' "
          "(expected string: a record format (see Value formats))")),
    # -- verify: expect / value and references ---------------------------------------------------
    case("verify with neither expect nor value", change('expect = "drive.log.serial"\n', ""),
         ("[[sections.steps]]\nn = 4", f"{S0}[3].expect",
          "a verify step needs exactly one of expect or value, got neither")),
    case("verify with both expect and value",
         change('expect = "drive.log.serial"', 'expect = "drive.log.serial"\nvalue = "ABC"'),
         ('value = "ABC"', f"{S0}[3].value",
          "a verify step needs exactly one of expect or value, got both")),
    case("verify value not in the observation's format",
         step_8('n = 8\nactor = "SA"\ntext = "CD."\naction = "verify"\n'
                'observe = "livecd.sha256"\nvalue = "f0:c1"'),
         ('value = "f0:c1"', f"{S1}[3].value", "'f0:c1' is not a valid sha256 (expected 64 hex "
          "digits, or 32 colon-separated hex bytes (`openssl dgst -c`), spaces and line breaks "
          "ignored; normalised to 64 lower-case hex digits)")),
    case("verify expect previous key not listed", change('"drive.log.serial"', '"previous.serial"'),
         ("previous.serial", f"{S0}[3].expect", "'serial' is not listed in ceremony.previous "
          "(expected one of key_count, livecd_sha256)")),
    case("verify expect a later step", change('"drive.log.serial"', '"step.5"'),
         ("step.5", f"{S0}[3].expect", "step 5 does not come before this step")),
    case("verify expect a step that yields nothing", change('"drive.log.serial"', '"step.1"'),
         ("step.1", f"{S0}[3].expect", "step 1 (signin) yields no value (expected a step whose "
          "action is one of record, hsm.fingerprint, hsm.list, hsm.backup, hsm.kek, drive.insert, "
          "transcript)")),
    case("verify expect a step that does not exist", change('"drive.log.serial"', '"step.99"'),
         ("step.99", f"{S0}[3].expect", "step 99 does not exist")),
    case("verify expect a step yielding another format", change('"drive.log.serial"', '"step.2"'),
         ("step.2", f"{S0}[3].expect", "step.2 yields format bag-serial, but drive.serial is "
          "compared in format usb-serial")),
    case("verify expect a drive serial not declared",
         change('"drive.log.serial"', '"drive.spare.serial"'),
         ("drive.spare", f"{S0}[3].expect", "drive 'spare' declares no serial")),
    case("verify expect an undeclared drive", change('"drive.log.serial"', '"drive.usb.serial"'),
         ("drive.usb", f"{S0}[3].expect",
          "'usb' is not a declared drive (expected one of log, spare)")),
    case("verify expect a host key not declared",
         step_8('n = 8\nactor = "KGA"\ntext = "Host key."\naction = "verify"\n'
                'observe = "signer.host_key"\nexpect = "signer.standby.host_key"',
                change(HOST_KEY_LINE, "")),
         ("signer.standby.host_key", f"{S1}[3].expect", "signer 'standby' declares no host_key")),
    case("verify drive.serial without drive", change('drive = "log"\nexpect', "expect"),
         ("[[sections.steps]]\nn = 4", f"{S0}[3].drive",
          "a verify step observing drive.serial requires 'drive' "
          "(expected string `[a-z0-9][a-z0-9-]*`)")),
    case("verify parameter its observation does not take",
         step_8('n = 8\nactor = "SA"\ntext = "CD."\naction = "verify"\n'
                'observe = "livecd.sha256"\nexpect = "previous.livecd_sha256"\ndrive = "log"'),
         ('drive = "log"\n\n[[sections.steps]]\nn = 9', f"{S1}[3].drive", "'drive' is not a "
          "parameter of a verify step observing livecd.sha256 (it takes observe, expect, value)")),
    # -- declared names ---------------------------------------------------------------------------
    case("undeclared drive",
         change('"drive.insert"\ndrive = "log"', '"drive.insert"\ndrive = "usb"'),
         ('drive = "usb"', f"{S0}[2].drive",
          "'usb' is not a declared drive (expected one of log, spare)"),
         ('drive = "log"\nexpect', f"{S0}[3].drive", "drive 'log' is used before it is plugged "
          "in (expected a drive.insert step with drive = 'log' before this step)")),
    case("undeclared bag", change('bag = "bag1"\nserial', 'bag = "bag2"\nserial'),
         ('bag = "bag2"', f"{S1}[2].bag", "'bag2' is not a declared bag (expected one of bag1)"),
         ("serial = 2", f"{S1}[2].serial", "step 2 records the serial of bag 'bag1', not 'bag2'")),
    case("undeclared policy", change('duration = "P14M"', 'duration = "P14M"\npolicies = ["lab"]'),
         ('"lab"', f"{S1}[1].policies[0]",
          "'lab' is not a declared policy (expected one of default)")),
    case("undeclared signer", change('duration = "P14M"', 'duration = "P14M"\nsigner = "active"'),
         ('signer = "active"', f"{S1}[1].signer",
          "'active' is not a declared signer (expected one of standby)")),
    case("undeclared quorum", change('quorum = ["gen"]', 'quorum = ["gen", "dso"]'),
         ('quorum = ["gen", "dso"]', f"{S1}[1].quorum",
          "'dso' is not a declared quorum (expected one of gen)")),
    case("duplicate drive label", change('label = "spare"', 'label = "log"'),
         ('label = "log"\ntitle = "Spare"', "drives[1].label",
          f"duplicate label 'log' (first at line {LOG_LABEL_LINE})")),
    case("duplicate section title", change('title = "Keys"', 'title = "Start"'),
         ('title = "Start"\nestimated = "PT20M"', "sections[1].title",
          f"duplicate section title 'Start' (first at line {START_TITLE_LINE})")),
    case("hsm step naming no signer when two are declared", TWO_SIGNERS,
         ("[[sections.steps]]\nn = 6", f"{S1}[1].signer",
          "names no signer, and 2 signers are declared (expected one of active, standby)")),
    case("hsm step with no signer declared",
         change(f'[[signers]]\nname = "standby"\nrole = "standby"\n{HOST_KEY_LINE}\n', ""),
         ("[[sections.steps]]\nn = 6", f"{S1}[1].signer",
          "names no signer, and no [[signers]] is declared")),
    case("generate for all policies with none declared", NO_POLICIES,
         ('action = "hsm.generate"', f"{S1}[1].action",
          "hsm.generate for all policies, and no [[policies]] is declared")),
    # -- quorums ----------------------------------------------------------------------------------
    case("quorum m above the role's max", change("m = 2", "m = 3"),
         ("m = 3", "quorums[0].m", "m = 3 is more than role KSO's max = 2 (expected 1..2)")),
    case("quorum m below 1", change("m = 2", "m = 0"),
         ("m = 0", "quorums[0].m", "0 is out of range (expected an integer at least 1)")),
    case("quorum role an observer", change('role = "KSO"\nm = 2', 'role = "WI"\nm = 2'),
         ('role = "WI"', "quorums[0].role",
          f"'WI' is an observer role, and observers never act ({ACTING})")),
    case("quorum authorizes a step that is not an hsm operation",
         change("authorizes = 6", "authorizes = 3"),
         ("authorizes", "quorums[0].authorizes",
          "step 3 has action drive.insert (expected one of hsm.purge, hsm.generate, "
          "hsm.backup, hsm.restore, hsm.kek)"),
         ('quorum = ["gen"]', f"{S1}[1].quorum", "quorum 'gen' authorizes step 3, not this step 6"),
         ('quorum = "gen"', f"{S1}[0].quorum", "quorum 'gen' authorizes step 3, which comes before "
          "this step (expected quorum steps before it)")),
    case("quorum authorizes a step that does not exist",
         change("authorizes = 6", "authorizes = 60"),
         ("authorizes", "quorums[0].authorizes", "step 60 does not exist"),
         ('quorum = ["gen"]', f"{S1}[1].quorum",
          "quorum 'gen' authorizes step 60, not this step 6")),
    case("quorum authorizes an hsm step that does not list it", GEN2,
         ("authorizes = 6", "quorums[0].authorizes", "step 6 does not list quorum 'gen'")),
    case("state-changing hsm step without a quorum", change('quorum = ["gen"]\n', ""),
         ("authorizes", "quorums[0].authorizes", "step 6 does not list quorum 'gen'"),
         ("[[sections.steps]]\nn = 6", f"{S1}[1].quorum", "action 'hsm.generate' requires "
          "'quorum' (expected string `[a-z0-9][a-z0-9-]*`, or an array of them)")),
    case("state-changing hsm step with an empty quorum list",
         change('quorum = ["gen"]', "quorum = []"),
         ("quorum = []", f"{S1}[1].quorum", "expected at least 1 element")),
    case("hsm step listing a quorum that authorizes another step",
         second_quorum("purge", "KSO", 1, 5,
                       change('quorum = ["gen"]', 'quorum = ["gen", "purge"]')),
         ("authorizes = 5", "quorums[1].authorizes",
          "step 5 has action quorum (expected one of hsm.purge, hsm.generate, hsm.backup, "
          "hsm.restore, hsm.kek)"),
         ('quorum = ["gen", "purge"]', f"{S1}[1].quorum",
          "quorum 'purge' authorizes step 5, not this step 6")),
    case("quorum step after the step it authorizes", LATE,
         ('quorum = "late"', f"{S1}[3].quorum", "quorum 'late' authorizes step 6, which comes "
          "before this step (expected quorum steps before it)")),
    case("quorum count above m", change("count = 2", "count = 3"),
         ("count = 3", f"{S1}[0].count",
          "count 3 is more than m = 2 of quorum 'gen' (expected 1..2)")),
    case("quorum count 0", change("count = 2", "count = 0"),
         ("count = 0", f"{S1}[0].count", "0 is out of range (expected an integer at least 1)")),
    case("quorum step naming two quorums", second_quorum(
            "other", "SA", 1, 6, change('quorum = "gen"', 'quorum = ["gen", "other"]',
                                        change('["gen"]', '["gen", "other"]'))),
         ('quorum = ["gen", "other"]\ncount', f"{S1}[0].quorum",
          "a quorum step collects one quorum, got 2 (expected one id)")),
    # -- seal, record, drive.copy -----------------------------------------------------------------
    case("seal serial a later step", change("serial = 2", "serial = 8"),
         ("serial = 8", f"{S1}[2].serial", "step 8 does not come before this step")),
    case("seal serial not a bag-serial record", change("serial = 2", "serial = 3"),
         ("serial = 3", f"{S1}[2].serial", "step 3 does not record a bag serial (expected a "
          "record step with format = \"bag-serial\")")),
    case("seal serial recorded for another bag",
         change('bag = "bag1"\nserial', 'bag = "bag2"\nserial', BAG2),
         ("serial = 2", f"{S1}[2].serial", "step 2 records the serial of bag 'bag1', not 'bag2'")),
    case("seal serial recorded for no bag", change('format = "bag-serial"\nbag = "bag1"\n',
                                                   'format = "bag-serial"\n'),
         ("serial = 2", f"{S1}[2].serial",
          "step 2 records a bag serial but names no bag (expected bag = 'bag1' on it)")),
    case("seal contents naming an unknown password",
         change('contents = ["drive:log"]', 'contents = ["drive:log", "password:device"]'),
         ("password:device", f"{S1}[2].contents[1]",
          "'device' is not the password of any hsm.backup step nor declared in [[passwords]] "
          "(no password is declared)")),
    case("seal contents naming an undeclared drive",
         change('contents = ["drive:log"]', 'contents = ["drive:usb"]'),
         ("drive:usb", f"{S1}[2].contents[0]",
          "'usb' is not a declared drive (expected one of log, spare)")),
    # -- handover: a bag sealed earlier changes hands -------------------------------------------
    case("handover of a bag no seal step seals",
         step_8('n = 8\nactor = "KGA"\ntext = "Take."\naction = "handover"\nbag = "bag2"',
                BAG2),
         ('bag = "bag2"\n\n', f"{S1}[3].bag", "bag 'bag2' is not sealed by any seal step before "
          "this step (expected a seal step with this bag earlier)")),
    case("handover before the seal", HANDOVER_FIRST,
         ('bag = "bag1"\n\n[[sections.steps]]\nn = 8', f"{S1}[2].bag",
          "bag 'bag1' is not sealed by any seal step before this step (expected a seal step "
          "with this bag earlier)")),
    case("handover of an undeclared bag",
         step_8('n = 8\nactor = "KGA"\ntext = "Take."\naction = "handover"\nbag = "nope"'),
         ('bag = "nope"', f"{S1}[3].bag", "'nope' is not a declared bag (expected one of bag1)")),
    case("handover with a serial of its own",
         step_8('n = 8\nactor = "KGA"\ntext = "Take."\naction = "handover"\nbag = "bag1"\n'
                "serial = 2"),
         ("serial = 2\n\n[[sections.steps]]\nn = 9", f"{S1}[3].serial",
          "'serial' is not a parameter of action 'handover' (it takes bag)")),
    case("handover naming no bag",
         step_8('n = 8\nactor = "KGA"\ntext = "Take."\naction = "handover"'),
         ('[[sections.steps]]\nn = 8\nactor = "KGA"', f"{S1}[3].bag",
          "action 'handover' requires 'bag' (expected string `[a-z0-9][a-z0-9-]*`)")),
    case("record bag with a format other than bag-serial",
         change('format = "bag-serial"', 'format = "text"'),
         ('bag = "bag1"\n\n[[sections.steps]]\nn = 3', f"{S0}[1].bag",
          "'bag' applies only to format = 'bag-serial', not 'text'"),
         ("serial = 2", f"{S1}[2].serial", "step 2 does not record a bag serial (expected a "
          "record step with format = \"bag-serial\")")),
    case("record equals a value of another format",
         step_8('n = 8\nactor = "KGA"\ntext = "Digest."\naction = "record"\n'
                'format = "sha256"\nequals = 3'),
         ("equals = 3", f"{S1}[3].equals",
          "step 3 yields format usb-serial, but this step records format sha256")),
    case("drive.copy onto itself",
         step_8('n = 8\nactor = "SA"\ntext = "Copy."\naction = "drive.copy"\n'
                'drive = "log"\nsource = "drive:log"'),
         ('source = "drive:log"', f"{S1}[3].source", "copies drive 'log' onto itself")),
    case("drive.copy from an unknown source",
         step_8('n = 8\nactor = "SA"\ntext = "Copy."\naction = "drive.copy"\n'
                'drive = "log"\nsource = "floppy"'),
         ('source = "floppy"', f"{S1}[3].source", "'floppy' is not a copy source "
          "(expected backup|transcript|journal|drive:[a-z0-9][a-z0-9-]*)")),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_error(c: Case) -> None:
    errors = errors_of(c.text)
    got = sorted((e.line, e.keypath, e.message) for e in errors)
    want = sorted((line_of(c.text, marker), keypath, message)
                  for marker, keypath, message in c.expected)
    assert got == want
    for e in errors:
        assert e.path == FILE
        assert str(e) == f"{FILE}:{e.line}: {e.keypath}: {e.message}"
