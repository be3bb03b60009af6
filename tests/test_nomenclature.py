import numpy as np
import pytest

from bigearth import nomenclature as nom

# BigEarthNet-19's published conversion (label_indices.json of the BigEarthNet-19 models):
# each new class as the list of original-label indices it merges.
LABEL_CONVERSION = [[0, 1], [2], [11, 12, 13], [14, 15, 16, 18], [17], [19], [20], [21], [22], [23], [24],
                    [25, 31], [26, 27], [28], [29], [33, 34], [35, 36], [38, 39], [40, 41, 42]]


def test_43_classes_in_clc_order():
    assert nom.NUM_CLASSES == 43 and len(set(nom.CLASS_NAMES)) == 43
    assert list(nom.CLC_CODES) == sorted(nom.CLC_CODES)
    assert 335 not in nom.CLC_CODES and len(nom.CLC_44_CODES) == 44


def test_19_class_conversion_matches_published_table():
    for i in range(43):
        one = np.zeros(43, np.uint8)
        one[i] = 1
        expected = np.zeros(19, np.uint8)
        for j, olds in enumerate(LABEL_CONVERSION):
            if i in olds:
                expected[j] = 1
        np.testing.assert_array_equal(nom.to_19(one), expected, err_msg=nom.CLASS_NAMES[i])


def test_unknown_names_and_codes_are_errors():
    with pytest.raises(nom.UnknownClassError, match="Mixed forrest"):
        nom.multi_hot_from_names(["Mixed forrest"], "x.json")
    with pytest.raises(nom.UnknownClassError, match="777"):
        nom.multi_hot_from_codes([777])
    assert nom.multi_hot_from_codes([335, 999, 312]).sum() == 1


def test_grid_codes():
    assert nom.grid_code_to_clc(np.array([1, 34, 44, 48])).tolist() == [111, 335, 523, 999]
