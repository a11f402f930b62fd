"""`keyrite keys JOURNAL [--format pem|dnskey|ds]`: the public keys a ceremony made, printed
again from its verified journal (what the Key Gen Log drive got beside the journal)."""

from __future__ import annotations

import argparse
import sys

from keyrite import exits

DESCRIPTION = """\
Print the public keys a ceremony's generation made, read from its journal alone: the journal is
verified first (as `keyrite verify` does; a journal that does not verify prints nothing) and
replayed, and each hsm.generate result's public keys are printed.

  pem     every new key's public key as PEM (SubjectPublicKeyInfo), each after a `# LOCATOR`
          line: what public-keys.pem on the Key Gen Log drive holds
  dnskey  the DNSKEY RR (flags 257 for a KSK, 256 for a ZSK) of each key whose key manager
          knew its role and zone (OpenDNSSEC); a pre-generated pool with no roles has none
  ds      the DS RR (digest type 2, SHA-256) of each such KSK

The RRs are made by dnspython from the journaled public keys; `ldns-key2ds -n -2` on the
DNSKEYs gives the same DS records.
"""

EPILOG = """\
exit codes: 0 printed (possibly nothing, with a note on stderr); 1 the journal does not verify
or does not replay; 2 the journal cannot be read, a --key is malformed, or --key selects a key
the journal did not make."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "keys", help="print the public keys a ceremony made (PEM, DNSKEY, DS) from its journal",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("journal", metavar="JOURNAL", help="the journal file (JSON lines)")
    p.add_argument("--format", choices=("pem", "dnskey", "ds"), default="pem",
                   help="what to print (default: pem)")
    p.add_argument("--key", dest="keys", metavar="VKEY", action="append",
                   help="the coordinator's verifier key, name+hexid+base64 (repeatable); "
                   "default: the key the journal's genesis announces (which shows it is "
                   "intact, not who wrote it)")
    p.add_argument("--locator", metavar="ID", action="append",
                   help="print only the key with this locator (repeatable)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # imported here: every `keyrite` command registers this one, only this one replays
    from coordinator.journal.verify import JournalChanged, read_verified
    from coordinator.publish import render
    from coordinator.report.facts import facts_of

    try:
        read = read_verified(args.journal, args.keys)
    except OSError as e:
        raise exits.BadInput(f"cannot read {args.journal}: {e.strerror or e}") from None
    except ValueError as e:
        raise exits.BadInput(str(e)) from None
    except JournalChanged as e:
        raise exits.Failure(f"{e}; read a copy that nobody writes to") from None
    if not read.report.ok:
        raise exits.Failure(read.report.summary())
    keys = list(facts_of(read.records).keys.public_keys)
    if args.locator:
        unknown = sorted(set(args.locator) - {k.locator for k in keys})
        if unknown:
            raise exits.BadInput(f"the journal records no public key {', '.join(unknown)}")
        keys = [k for k in keys if k.locator in set(args.locator)]
    text = render(keys, args.format)
    if not text:
        why = ("no generation in this journal carries public keys" if not keys else
               "no key has a role and zone (a pre-generated pool: PEMs only)")
        print(f"keyrite keys: nothing to print as {args.format}: {why}", file=sys.stderr)
    sys.stdout.write(text)
    return exits.OK
