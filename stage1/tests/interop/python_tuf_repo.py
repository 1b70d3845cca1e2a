"""Builds a TUF 1.0 repository with the Python reference implementation
(python-tuf), for stage1's standalone client to read.

Usage: python_tuf_repo.py OUT_DIR

Writes OUT_DIR/metadata/{1,2}.root.json (root rotated once, new root key,
signed by the old and the new key), timestamp.json, 1.snapshot.json,
1.targets.json and OUT_DIR/targets/<sha256>.<name> (consistent
snapshots), with a target carrying racklet custom metadata. Prints
"<name> <length> <sha256>" per target.
"""
import hashlib
import os
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Key, Metadata, MetaFile, Role, Root, Snapshot, Targets, TargetFile, Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

out = sys.argv[1]
os.makedirs(os.path.join(out, "metadata"), exist_ok=True)
os.makedirs(os.path.join(out, "targets"), exist_ok=True)
expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
signers = {r: CryptoSigner.generate_ed25519() for r in ["root", "targets", "snapshot", "timestamp"]}

root = Root(expires=expires, consistent_snapshot=True)
for role, s in signers.items():
    root.add_key(s.public_key, role)
md_root = Metadata(root)
md_root.sign(signers["root"])
ser = JSONSerializer(compact=False)
md_root.to_file(os.path.join(out, "metadata", "1.root.json"), ser)

# Rotate the root key: version 2 signed by the old and the new root key.
new_root = CryptoSigner.generate_ed25519()
root.revoke_key(signers["root"].public_key.keyid, "root")
root.add_key(new_root.public_key, "root")
root.version = 2
md_root2 = Metadata(root)
md_root2.sign(signers["root"], append=True)
md_root2.sign(new_root, append=True)
md_root2.to_file(os.path.join(out, "metadata", "2.root.json"), ser)

targets = Targets(expires=expires)
lines = []
for name, data in [("os-py-1.0.0.uki", b"python-tuf made this " * 5000), ("notes.txt", b"hello\n")]:
    tf = TargetFile.from_data(name, data, ["sha256"])
    if name.endswith(".uki"):
        tf.unrecognized_fields["custom"] = {"racklet": {
            "kind": "os", "version": "1.0.0", "security_version": 1, "arch": "x86_64",
            "channel": "stable", "assign": {"groups": ["workers"]},
        }}
    targets.targets[name] = tf
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "targets", f"{digest}.{name}"), "wb") as f:
        f.write(data)
    lines.append(f"{name} {len(data)} {digest}")
md_targets = Metadata(targets)
md_targets.sign(signers["targets"])
md_targets.to_file(os.path.join(out, "metadata", "1.targets.json"), ser)

snapshot = Snapshot(expires=expires)
snapshot.meta["targets.json"] = MetaFile(version=1)
md_snap = Metadata(snapshot)
md_snap.sign(signers["snapshot"])
md_snap.to_file(os.path.join(out, "metadata", "1.snapshot.json"), ser)

timestamp = Timestamp(expires=expires)
timestamp.snapshot_meta = MetaFile(version=1)
md_ts = Metadata(timestamp)
md_ts.sign(signers["timestamp"])
md_ts.to_file(os.path.join(out, "metadata", "timestamp.json"), ser)

print("\n".join(sorted(lines)))
