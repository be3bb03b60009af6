"""TFDS's own builder test on dummy_data/ (raw products, one per split, as the manual_dir)."""
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from dataset_builder.bigearth_sr import bigearth_sr_dataset_builder  # noqa: E402


class BigearthSrTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = bigearth_sr_dataset_builder.Builder
    SPLITS = {"train": 4, "validation": 4, "test": 4}  # 2 x 2 patches of one tiny product per split
    SKIP_CHECKSUMS = True  # nothing is downloaded: the data comes from --manual_dir


if __name__ == "__main__":
    tfds.testing.test_main()
