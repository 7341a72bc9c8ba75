"""The verification's settings as JupyterHub configuration, shared by pages and spawner.

`jupyterhub_config.py` sets them from the environment (GALLERY_VERIFY_EVERY_H,
GALLERY_VERIFY_TIMEOUT); a file in `config.d/` may change them like any other setting.
"""

from __future__ import annotations

from pathlib import Path

from traitlets import Float, Integer, Unicode
from traitlets.config import SingletonConfigurable

from gallery_common.verifier_contract import VERIFIER_URL
from gallery_hub.verification_results import VerificationResult, VerificationResults


class GalleryVerification(SingletonConfigurable):
    """Where the verifier is, how often and how long it checks, where results are kept."""

    every_h = Float(
        24,
        config=True,
        help="Verify every example again after this many hours (0: only after builds and "
        "gallery.yaml changes).",
    )
    timeout_s = Integer(
        300,
        config=True,
        help="Seconds a render may take before the example counts as broken (timeout).",
    )
    worker_url = Unicode(
        VERIFIER_URL, config=True, help="The verifier service (headless chromium); empty: off."
    )
    worker_token = Unicode("", config=True, help="Token the verifier service expects.")
    service_token = Unicode(
        "",
        config=True,
        help="API token of the `gallery-verification` service (starts the system visitor's "
        "servers); empty: no verification.",
    )
    results_dir = Unicode(
        "/srv/jupyterhub/state/verifications",
        config=True,
        help="Where results, screenshots and thumbnails are kept.",
    )

    _results: VerificationResults | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.worker_url and self.worker_token and self.service_token)

    def results(self) -> VerificationResults:
        """The one result store of this hub (pages, spawner and verifier share it)."""
        if self._results is None:
            self._results = VerificationResults(Path(self.results_dir))
        return self._results

    def result_for(self, example_id: str) -> VerificationResult | None:
        return self.results().get(example_id)
