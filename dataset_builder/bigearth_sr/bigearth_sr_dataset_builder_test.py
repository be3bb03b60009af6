"""TFDS's own builder test on dummy_data/ (raw products, one per split, as the manual_dir)."""
import shutil
import tempfile
from pathlib import Path

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from dataset_builder.bigearth_sr import bigearth_sr_dataset_builder  # noqa: E402


DUMMY = Path(__file__).parent / "dummy_data"


class BigearthSrTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = bigearth_sr_dataset_builder.Builder
    SPLITS = {"train": 4, "validation": 4, "test": 4}  # 2 x 2 patches of one tiny product per split
    SKIP_CHECKSUMS = True  # nothing is downloaded: the data comes from --manual_dir

    # TFDS's harness makes the example folder the download_dir too, and the products are built
    # into <download_dir>/bigearth_sr_build/. Building inside the checkout made the test share
    # state with anything else reading dummy_data/ (the suite saw parts vanish mid-build), so the
    # harness gets a private folder of links to the raw inputs, removed afterwards.
    @tfds.core.utils.classproperty
    @classmethod
    def dummy_data(cls):  # the harness's own is memoized at first access: replaced, not configured
        if getattr(cls, "_work", None) is None:
            cls._work = Path(tempfile.mkdtemp(prefix="bigearth_sr_dummy_"))
            for p in DUMMY.iterdir():
                if p.name != "bigearth_sr_build":  # an old checkout's build output, not an input
                    (cls._work / p.name).symlink_to(p.resolve())
        return cls._work

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "_work", None) is not None:
            shutil.rmtree(cls._work, ignore_errors=True)
            cls._work = None
        super().tearDownClass()

if __name__ == "__main__":
    tfds.testing.test_main()
