"""TFDS's own builder test on dummy_data/ (raw products, one per split, as the manual_dir)."""
import shutil
from pathlib import Path

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from dataset_builder.bigearth_sr import bigearth_sr_dataset_builder  # noqa: E402


BUILD_DIR = Path(__file__).parent / "dummy_data" / "bigearth_sr_build"


class BigearthSrTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = bigearth_sr_dataset_builder.Builder
    SPLITS = {"train": 4, "validation": 4, "test": 4}  # 2 x 2 patches of one tiny product per split
    SKIP_CHECKSUMS = True  # nothing is downloaded: the data comes from --manual_dir

    # TFDS's harness makes dummy_data/ the download_dir too, so the products are built into
    # dummy_data/bigearth_sr_build/ (git-ignored): removed before and after, never reused stale
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        shutil.rmtree(BUILD_DIR, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(BUILD_DIR, ignore_errors=True)
        super().tearDownClass()


if __name__ == "__main__":
    tfds.testing.test_main()
