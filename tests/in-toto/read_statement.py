"""Reads one in-toto Statement v1 (JSON on stdin) with the in-toto project's own Python
bindings, as strictly as they read: protobuf's json_format.Parse refuses a field the Statement
does not define, and the bindings' Statement.validate() checks what v1 requires.

Prints what was read as one JSON object (protobuf's JSON names: _type, subject, predicateType,
predicate) and exits 0; exits 3 with the reason on stderr when the bindings refuse it; any
other failure means the bindings could not run.
"""

import json
import sys

REFUSED = 3

try:
    from google.protobuf import json_format
    from in_toto_attestation.v1.statement import Statement
    from in_toto_attestation.v1.statement_pb2 import Statement as StatementProto
except ImportError as e:
    sys.exit(f"the in-toto bindings are not installed: {e}")


def main():
    text = sys.stdin.read()
    try:
        proto = json_format.Parse(text, StatementProto())
        Statement.copy_from_pb(proto).validate()
    except (json_format.ParseError, ValueError) as e:
        print(f"refused: {e}", file=sys.stderr)
        return REFUSED
    json.dump(json_format.MessageToDict(proto), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
