"""TFDS's own builder test on dummy_data/ (one patch per split, as the manual_dir)."""
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from dataset_builder.bigearth_sr import bigearth_sr_dataset_builder  # noqa: E402


class BigearthSrTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = bigearth_sr_dataset_builder.Builder
    SPLITS = {"train": 1, "validation": 1, "test": 1}
    SKIP_CHECKSUMS = True  # nothing is downloaded: the data comes from --manual_dir


if __name__ == "__main__":
    tfds.testing.test_main()
