"""The Python reference TUF client (python-tuf ngclient) fetching through
bootd over HTTPS, trusting only the rack CA.

usage: fetch.py BASE_URL CA_PEM WORKDIR TARGET...
WORKDIR/metadata/root.json must hold the trusted root; targets land in
WORKDIR/targets/.
"""
import ssl
import sys
import urllib.error
import urllib.request

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface, Updater


class RackCAFetcher(FetcherInterface):
    """urllib with an SSL context that trusts the rack CA and nothing else."""

    def __init__(self, cafile):
        self.ctx = ssl.create_default_context(cafile=cafile)

    def _fetch(self, url):
        try:
            resp = urllib.request.urlopen(url, context=self.ctx, timeout=10)
        except urllib.error.HTTPError as e:
            raise exceptions.DownloadHTTPError(str(e), e.code) from e
        except (urllib.error.URLError, OSError) as e:
            raise exceptions.DownloadError(str(e)) from e

        def chunks():
            while True:
                data = resp.read(64 * 1024)
                if not data:
                    break
                yield data
            resp.close()

        return chunks()


def main():
    base, cafile, work, *targets = sys.argv[1:]
    with open(f"{work}/metadata/root.json", "rb") as f:
        root = f.read()
    updater = Updater(
        metadata_dir=f"{work}/metadata",
        metadata_base_url=f"{base}/metadata/",
        target_base_url=f"{base}/targets/",
        target_dir=f"{work}/targets",
        fetcher=RackCAFetcher(cafile),
        bootstrap=root,
    )
    updater.refresh()
    print(f"timestamp version {updater._trusted_set.timestamp.version}")
    for name in targets:
        info = updater.get_targetinfo(name)
        if info is None:
            print(f"no target {name}")
            sys.exit(1)
        path = updater.download_target(info, filepath=f"{work}/targets/{name}")
        print(f"downloaded {name} -> {path}")


if __name__ == "__main__":
    main()
