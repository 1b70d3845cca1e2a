"""Interop check: the Python reference TUF client (python-tuf's ngclient)
refreshes a repository made by imgsign and downloads every target.

Usage: python_tuf_client.py REPO_DIR TRUSTED_ROOT OUT_DIR
Prints one line per target: `<name> <length> <sha256>`.
"""
import hashlib
import os
import shutil
import sys
import urllib.parse

from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata


class FileFetcher(FetcherInterface):
    """Fetches file:// URLs: the repository is a directory on disk."""

    def _fetch(self, url):
        path = urllib.parse.urlparse(url).path
        path = urllib.parse.unquote(path)
        if not os.path.exists(path):
            raise DownloadHTTPError(f"{path} not found", 404)
        def chunks():
            with open(path, "rb") as f:
                while True:
                    b = f.read(1 << 16)
                    if not b:
                        return
                    yield b
        return chunks()


def main():
    repo, root, out = sys.argv[1:4]
    meta_dir = os.path.join(out, "metadata")
    os.makedirs(meta_dir, exist_ok=True)
    shutil.copy(root, os.path.join(meta_dir, "root.json"))
    tdir = os.path.join(out, "targets")
    os.makedirs(tdir, exist_ok=True)
    base = "file://" + os.path.abspath(repo)
    updater = Updater(
        metadata_dir=meta_dir,
        metadata_base_url=base + "/metadata/",
        target_base_url=base + "/targets/",
        target_dir=tdir,
        fetcher=FileFetcher(),
        bootstrap=open(root, "rb").read(),
    )
    updater.refresh()
    # ngclient persisted the verified targets metadata it trusts now.
    targets = Metadata.from_file(os.path.join(meta_dir, "targets.json")).signed.targets
    for name in sorted(targets):
        info = updater.get_targetinfo(name)
        path = updater.download_target(info)
        with open(path, "rb") as f:
            data = f.read()
        print(name, len(data), hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    main()
