"""Synthetic Sentinel-2 Level-2A products that a SAFE reader cannot tell from ESA's but for size.

The scene is made at 10 m for all 12 bands (the "truth"), from a land-cover map over the 43
BigEarthNet classes, each with its own spectrum and texture; inside a region the bands vary partly
independently (sub-pixel mixtures of materials, a SWIR moisture term, sensor noise), as real
bands do; the 20 m and 60 m bands are block
means of that truth, which is what a super-resolution method has to undo. Clouds (SCL 8/9),
cirrus (10), cloud shadow (3) and snow (11) are drawn into the bands and into SCL; a CORINE
raster with CLC codes is written beside the products.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.transform import Affine
from scipy.spatial import cKDTree

from bigearth.files import atomic_path, output_folder
from bigearth.nomenclature import CLC_CODES
from bigearth.options import S2_TILE_M
from bigearth.record import BANDS_SUPER, PATCH_M

from .safe import BAND_IDS, NATIVE
from .sr.detail import block_mean
from .tiles import DEFAULT_SCENES, REAL_TILES  # noqa: F401  (DEFAULT_SCENES: benchmarks import it from here)

# Reflectance x 10000 of a few materials, bands in BANDS_SUPER order
# (B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12).
MATERIALS = {
    "water":   [620, 520, 470, 300, 250, 200, 180, 150, 140, 100, 80, 60],
    "turbid":  [800, 760, 900, 760, 700, 420, 360, 320, 300, 150, 120, 90],
    "broadleaf": [300, 290, 560, 300, 920, 2900, 3600, 3900, 4000, 1250, 1850, 820],
    "conifer": [240, 230, 410, 240, 700, 1750, 2150, 2350, 2450, 800, 1150, 480],
    "grass":   [420, 410, 720, 520, 1250, 2600, 3100, 3300, 3400, 1100, 2250, 1200],
    "crop":    [560, 520, 900, 700, 1500, 2900, 3500, 3800, 3900, 1200, 2400, 1300],
    "soil":    [900, 950, 1250, 1550, 1750, 1950, 2100, 2250, 2350, 850, 3000, 2400],
    "urban":   [1150, 1120, 1230, 1330, 1420, 1600, 1720, 1830, 1870, 700, 2250, 1950],
    "sand":    [1500, 1700, 2200, 2700, 2900, 3100, 3200, 3300, 3400, 1150, 3850, 3250],
    "rock":    [1200, 1300, 1600, 1900, 2100, 2300, 2400, 2500, 2550, 900, 2900, 2500],
    "burnt":   [380, 390, 480, 580, 690, 880, 980, 1080, 1130, 420, 1750, 1650],
    "marsh":   [420, 410, 620, 460, 820, 1700, 2000, 2100, 2200, 700, 1300, 620],
    "salt":    [2500, 2700, 2900, 3000, 3050, 3100, 3100, 3150, 3150, 1200, 2600, 2200],
}
SNOW = np.array([9000, 9050, 8950, 8800, 8600, 8400, 8200, 8000, 7850, 3000, 900, 700], np.float32)
CLOUD = np.array([7000, 7200, 7300, 7400, 7400, 7400, 7400, 7500, 7500, 4000, 5200, 4100], np.float32)

# Each CLC class as a mixture of materials, its SCL code when clear, texture amplitude and
# prior weight (how common it is; roughly BigEarthNet's class frequencies).
_CLASS_MIX = {
    111: ({"urban": 0.9, "grass": 0.1}, 5, 0.20, 2), 112: ({"urban": 0.6, "grass": 0.4}, 5, 0.25, 10),
    121: ({"urban": 0.95, "soil": 0.05}, 5, 0.15, 4), 122: ({"urban": 0.7, "soil": 0.3}, 5, 0.2, 1),
    123: ({"urban": 0.6, "water": 0.4}, 5, 0.2, 0.3), 124: ({"urban": 0.5, "grass": 0.5}, 5, 0.15, 0.5),
    131: ({"rock": 0.6, "soil": 0.4}, 5, 0.3, 1), 132: ({"soil": 0.6, "urban": 0.4}, 5, 0.3, 0.3),
    133: ({"soil": 0.7, "urban": 0.3}, 5, 0.3, 0.3), 141: ({"grass": 0.7, "broadleaf": 0.3}, 4, 0.15, 0.5),
    142: ({"grass": 0.85, "urban": 0.15}, 4, 0.15, 1), 211: ({"crop": 0.55, "soil": 0.45}, 4, 0.35, 25),
    212: ({"crop": 0.85, "soil": 0.15}, 4, 0.2, 2), 213: ({"crop": 0.5, "water": 0.5}, 6, 0.2, 0.5),
    221: ({"crop": 0.4, "soil": 0.6}, 4, 0.4, 1), 222: ({"broadleaf": 0.5, "soil": 0.5}, 4, 0.3, 1),
    223: ({"broadleaf": 0.3, "soil": 0.7}, 4, 0.3, 1), 231: ({"grass": 1.0}, 4, 0.12, 15),
    241: ({"crop": 0.5, "broadleaf": 0.3, "soil": 0.2}, 4, 0.3, 0.5),
    242: ({"crop": 0.4, "grass": 0.3, "soil": 0.3}, 4, 0.4, 10),
    243: ({"crop": 0.35, "broadleaf": 0.35, "grass": 0.3}, 4, 0.35, 12),
    244: ({"broadleaf": 0.5, "grass": 0.5}, 4, 0.25, 2), 311: ({"broadleaf": 1.0}, 4, 0.10, 14),
    312: ({"conifer": 1.0}, 4, 0.10, 20), 313: ({"conifer": 0.5, "broadleaf": 0.5}, 4, 0.12, 18),
    321: ({"grass": 0.7, "soil": 0.3}, 4, 0.2, 3), 322: ({"grass": 0.5, "conifer": 0.3, "soil": 0.2}, 4, 0.2, 2),
    323: ({"broadleaf": 0.4, "soil": 0.6}, 4, 0.25, 2), 324: ({"broadleaf": 0.4, "grass": 0.4, "soil": 0.2}, 4, 0.3, 14),
    331: ({"sand": 1.0}, 5, 0.1, 0.5), 332: ({"rock": 1.0}, 5, 0.15, 1), 333: ({"rock": 0.5, "grass": 0.5}, 5, 0.25, 1),
    334: ({"burnt": 1.0}, 5, 0.15, 0.3), 411: ({"marsh": 0.8, "water": 0.2}, 4, 0.2, 2), 412: ({"marsh": 0.6, "soil": 0.4}, 4, 0.2, 3),
    421: ({"marsh": 0.6, "turbid": 0.4}, 4, 0.2, 0.5), 422: ({"salt": 0.8, "water": 0.2}, 5, 0.1, 0.3),
    423: ({"sand": 0.4, "turbid": 0.6}, 6, 0.15, 0.5), 511: ({"turbid": 0.8, "grass": 0.2}, 6, 0.1, 1),
    512: ({"water": 1.0}, 6, 0.05, 6), 521: ({"turbid": 0.7, "water": 0.3}, 6, 0.08, 0.5),
    522: ({"turbid": 1.0}, 6, 0.08, 0.3), 523: ({"water": 0.9, "turbid": 0.1}, 6, 0.04, 3),
}
assert tuple(_CLASS_MIX) == CLC_CODES


def class_spectra() -> np.ndarray:
    """(43, 12) float32 spectra; each class gets a fixed +/-8 % per-band signature on its mixture."""
    out = np.zeros((len(CLC_CODES), 12), np.float32)
    for i, code in enumerate(CLC_CODES):
        mix = _CLASS_MIX[code][0]
        base = sum(w * np.asarray(MATERIALS[m], np.float32) for m, w in mix.items())
        jitter = np.random.default_rng(code).uniform(0.92, 1.08, 12).astype(np.float32)
        out[i] = base * jitter
    return out


# Detail model (tuned so the cross-band detail statistics of dataset_builder/sr/detail.py fall in
# the range of real Sentinel-2 imagery; table in benchmarks/RESULTS.md): a brightness gain shared by
# all bands, two mixture components per class along spectral directions of its materials, a moisture
# component seen by B11/B12 alone, an additive haze (aerosol, water vapour) in the
# shortest bands and B09, and sensor noise of a fraction of the signal in every band.
_SHARED_GAIN = 0.45
_SWIR_MOISTURE = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.5, 0.7], np.float32)
_HAZE = np.array([160, 10, 5, 0, 0, 0, 0, 0, 0, 70, 0, 0], np.float32)  # DN per unit of the haze field
_NOISE = np.array([0.012, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.02, 0.012, 0.012], np.float32)
_PARTNERS = ("soil", "grass", "water", "urban", "broadleaf", "crop")


def mixture_directions() -> np.ndarray:
    """(43, 2, 12): per class, two spectral directions its sub-pixel mixture varies along, as unit
    shares of material spectra (between its own two main materials, and toward a neighbour material)."""
    out = np.zeros((len(CLC_CODES), 2, 12), np.float32)
    for i, code in enumerate(CLC_CODES):
        mats = list(_CLASS_MIX[code][0])
        rng = np.random.default_rng(code + 1000)
        others = [m for m in _PARTNERS if m not in mats]
        a, b = rng.choice(others, 2, replace=False)
        first = (mats[0], mats[1]) if len(mats) > 1 else (mats[0], a)
        out[i, 0] = np.subtract(MATERIALS[first[1]], MATERIALS[first[0]], dtype=np.float32) * 0.5
        out[i, 1] = np.subtract(MATERIALS[b], MATERIALS[mats[0]], dtype=np.float32) * 0.3
    return out


@dataclasses.dataclass
class SynthConfig:
    tile: str = "T33UUP"
    date: str = "20170613T101031"
    mission: str = "S2A"
    baseline: str = "05.00"
    tile_size_m: int = 12_000
    seed: int = 0
    cloud_cover: float = 0.08
    snow_cover: float = 0.04
    nodata_cover: float = 0.0  # share of the tile outside the swath (SCL 0, bands 0)
    region_m: float = 700.0  # mean land-cover region size
    write_truth: bool = False


def _smooth_noise(rng: np.random.Generator, size: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Zero-mean noise with features of about ``cell`` pixels, (size, size) float32."""
    total = np.zeros((size, size), np.float32)
    amp = 1.0
    for o in range(octaves):
        c = max(cell / 2 ** o, 2.0)
        n = int(np.ceil(size / c)) + 2
        coarse = torch.from_numpy(rng.standard_normal((1, 1, n, n), dtype=np.float32))
        fine = F.interpolate(coarse, scale_factor=c, mode="bicubic", align_corners=False)[0, 0, :size, :size]
        total += amp * fine.numpy()
        amp *= 0.5
    return total


def land_cover(tile: str, size_60m: int, region_m: float, seed: int) -> np.ndarray:
    """(size_60m, size_60m) indices into CLC_CODES: Voronoi regions with class priors, warped edges."""
    rng = np.random.default_rng([seed, int(hashlib.sha256(tile.encode()).hexdigest()[:8], 16)])
    n_regions = max(4, int((size_60m * 60 / region_m) ** 2))
    pts = rng.uniform(0, size_60m, (n_regions, 2))
    prior = np.array([_CLASS_MIX[c][3] for c in CLC_CODES], np.float64)
    classes = rng.choice(len(CLC_CODES), n_regions, p=prior / prior.sum())
    yy, xx = np.mgrid[0:size_60m, 0:size_60m].astype(np.float32)
    warp = region_m / 60 / 3
    yy += warp * _smooth_noise(rng, size_60m, region_m / 60, 2)
    xx += warp * _smooth_noise(rng, size_60m, region_m / 60, 2)
    _, nearest = cKDTree(pts).query(np.stack([yy.ravel(), xx.ravel()], 1), workers=-1)
    return classes[nearest].reshape(size_60m, size_60m).astype(np.uint8)


def _quantile_mask(field: np.ndarray, cover: float) -> np.ndarray:
    if cover <= 0:
        return np.zeros(field.shape, bool)
    return field > np.quantile(field[::7, ::7], 1 - cover)


def product_name(cfg: SynthConfig) -> str:
    proc = (dt.datetime.strptime(cfg.date, "%Y%m%dT%H%M%S") + dt.timedelta(hours=2, minutes=7)).strftime("%Y%m%dT%H%M%S")
    return f"{cfg.mission}_MSIL2A_{cfg.date}_N{cfg.baseline.replace('.', '')}_R022_{cfg.tile}_{proc}"


def render_scene(cfg: SynthConfig):
    """The scene at 10 m: (truth (12,H,W) float32 reflectance x 10000, classes at 60 m, SCL at 20 m)."""
    if cfg.tile_size_m % PATCH_M and cfg.tile_size_m != 109_800:
        raise ValueError(f"tile_size_m must be a multiple of {PATCH_M} m (or the full 109,800 m)")
    size = cfg.tile_size_m // 10
    s60 = size // 6
    rng = np.random.default_rng([cfg.seed, int(cfg.date[:8])])
    lc60 = land_cover(cfg.tile, s60, cfg.region_m, cfg.seed)
    lc = np.repeat(np.repeat(lc60, 6, 0), 6, 1)

    spectra = class_spectra()
    texture_amp = np.array([_CLASS_MIX[c][2] for c in CLC_CODES], np.float32)
    texture = _smooth_noise(rng, size, 6.0, 3) * 0.5 + 0.5 * rng.standard_normal((size, size), dtype=np.float32) * 0.5
    gain = 1.0 + texture * texture_amp[lc] * _SHARED_GAIN  # brightness shared by all bands (illumination, density)
    del texture

    cloud_field = _smooth_noise(rng, size, 200.0, 1)
    cloud_core = _quantile_mask(cloud_field, cfg.cloud_cover)
    thr = np.quantile(cloud_field[::7, ::7], 1 - cfg.cloud_cover) if cfg.cloud_cover > 0 else np.inf
    # opacity ramps up over a thin margin around the cloud (the margin becomes cirrus in SCL)
    alpha = np.clip((cloud_field - (thr - 0.1)) / 0.2, 0, 1).astype(np.float32) if cfg.cloud_cover > 0 else np.zeros_like(cloud_field)
    del cloud_field
    shift = 30  # shadow 300 m south-east of its cloud
    shadow = np.zeros_like(cloud_core)
    shadow[shift:, shift:] = cloud_core[:-shift, :-shift]
    shadow &= alpha < 0.05
    snow = _quantile_mask(_smooth_noise(rng, size, 200.0, 1), cfg.snow_cover) & (alpha < 0.05) & ~shadow
    nodata = np.zeros((size, size), bool)
    if cfg.nodata_cover > 0:  # a swath edge cutting off the tile's west corner diagonally
        yy, xx = np.mgrid[0:size, 0:size]
        nodata = (xx + 0.5 * yy) < np.quantile((xx + 0.5 * yy)[::7, ::7], cfg.nodata_cover)

    # Sub-pixel mixtures that vary inside a region, so bands carry partly independent detail
    # (as on real imagery: where soil shows through a crop, red rises while NIR falls); drawn after
    # the masks so clouds, shadow and snow stay where they were.
    dirs = mixture_directions() * texture_amp[:, None, None] * 2.0  # (43, 2, 12)
    mix = [_smooth_noise(rng, size, 4.0, 2) for _ in range(2)]
    moist = _smooth_noise(rng, size, 3.0, 2)  # soil/leaf moisture: a SWIR-only component
    haze = _smooth_noise(rng, size, 8.0, 2)  # aerosol and water vapour: strongest in B01 and B09

    truth = np.empty((12, size, size), np.float32)
    for b in range(12):
        band = (spectra[lc, b] + mix[0] * dirs[lc, 0, b] + mix[1] * dirs[lc, 1, b]) * gain
        band *= 1 + _SWIR_MOISTURE[b] * texture_amp[lc] * moist
        band += _HAZE[b] * haze
        band += rng.standard_normal((size, size), dtype=np.float32) * (_NOISE[b] * spectra[lc, b])  # sensor noise
        np.maximum(band, 1, out=band)  # DN 0 means no data in L2A: a valid pixel is never 0
        band = np.where(snow, SNOW[b] * (0.9 + 0.1 * gain), band)
        band = np.where(shadow, band * 0.35, band)
        band = band * (1 - alpha) + CLOUD[b] * alpha
        band[nodata] = 0
        truth[b] = band

    # SCL at 20 m from the 20 m means of the masks (as Sen2Cor classifies on the 20 m grid)
    lc20 = lc[::2, ::2]
    scl = np.array([_CLASS_MIX[c][1] for c in CLC_CODES], np.uint8)[lc20]
    a20 = block_mean(alpha, 2)
    scl[block_mean(shadow.astype(np.float32), 2) >= 0.5] = 3
    scl[block_mean(snow.astype(np.float32), 2) >= 0.5] = 11
    scl[(a20 > 0.05) & (a20 <= 0.3)] = 10
    scl[(a20 > 0.3) & (a20 <= 0.6)] = 8
    scl[a20 > 0.6] = 9
    scl[block_mean(nodata.astype(np.float32), 2) >= 0.5] = 0
    return truth, lc60, scl


def _write_jp2(path: Path, arr: np.ndarray, crs: str, transform: Affine) -> None:
    block = min(1024, arr.shape[0])
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype=arr.dtype, crs=crs, transform=transform, QUALITY=100, REVERSIBLE="YES",
                       YCBCR420="NO", BLOCKXSIZE=block, BLOCKYSIZE=block, RESOLUTIONS=min(6, max(1, int(np.log2(block)) - 5))) as ds:
        ds.write(arr, 1)


# Image_Content_QI percentages of the SCL classes, as Sen2Cor writes them into MTD_MSIL2A.xml
QI_CLASSES = {"NODATA_PIXEL_PERCENTAGE": (0,), "SATURATED_DEFECTIVE_PIXEL_PERCENTAGE": (1,),
              "DARK_FEATURES_PERCENTAGE": (2,), "CLOUD_SHADOW_PERCENTAGE": (3,), "VEGETATION_PERCENTAGE": (4,),
              "NOT_VEGETATED_PERCENTAGE": (5,), "WATER_PERCENTAGE": (6,), "UNCLASSIFIED_PERCENTAGE": (7,),
              "MEDIUM_PROBA_CLOUDS_PERCENTAGE": (8,), "HIGH_PROBA_CLOUDS_PERCENTAGE": (9,),
              "THIN_CIRRUS_PERCENTAGE": (10,), "SNOW_ICE_PERCENTAGE": (11,)}


def _quality_xml(scl: np.ndarray) -> str:
    """The product's Quality_Indicators_Info from its SCL: Cloud_Coverage_Assessment (medium +
    high probability clouds + thin cirrus) and the per-class percentages. Sen2Cor gives the
    class percentages over the valid pixels; NODATA over all."""
    counts = np.bincount(scl.ravel(), minlength=12).astype(float)
    valid = max(counts.sum() - counts[0], 1.0)
    pct = {k: 100 * counts[list(v)].sum() / (counts.sum() if k.startswith("NODATA") else valid)
           for k, v in QI_CLASSES.items()}
    cloud = pct["MEDIUM_PROBA_CLOUDS_PERCENTAGE"] + pct["HIGH_PROBA_CLOUDS_PERCENTAGE"] + pct["THIN_CIRRUS_PERCENTAGE"]
    items = "".join(f"      <{k}>{v:.6f}</{k}>\n" for k, v in pct.items())
    return (f"  <n1:Quality_Indicators_Info>\n    <Cloud_Coverage_Assessment>{cloud:.6f}</Cloud_Coverage_Assessment>\n"
            f"    <Image_Content_QI>\n{items}    </Image_Content_QI>\n  </n1:Quality_Indicators_Info>\n")


def _mtd_msil2a(name: str, cfg: SynthConfig, granule: str, files: list[str], scl_map: np.ndarray | None = None) -> str:
    start = dt.datetime.strptime(cfg.date, "%Y%m%dT%H%M%S").strftime("%Y-%m-%dT%H:%M:%S.024Z")
    offsets = ""
    if float(cfg.baseline) >= 4.0:
        offsets = "<BOA_ADD_OFFSET_VALUES_LIST>\n" + "".join(
            f'        <BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>\n' for i in range(13)
        ) + "      </BOA_ADD_OFFSET_VALUES_LIST>"
    image_files = "".join(f"            <IMAGE_FILE>{f}</IMAGE_FILE>\n" for f in files)
    spectral = "".join(
        f'        <Spectral_Information bandId="{i}" physicalBand="{b.replace("B0", "B")}">'
        f"<RESOLUTION>{ {'B10': 60}.get(b, NATIVE.get(b, 60)) }</RESOLUTION></Spectral_Information>\n"
        for i, b in enumerate(BAND_IDS)
    )
    scl_names = ["NODATA", "SATURATED_DEFECTIVE", "DARK_FEATURE_SHADOW", "CLOUD_SHADOW", "VEGETATION",
                 "NOT_VEGETATED", "WATER", "UNCLASSIFIED", "CLOUD_MEDIUM_PROBA", "CLOUD_HIGH_PROBA",
                 "THIN_CIRRUS", "SNOW_ICE"]
    scl = "".join(f"        <Scene_Classification_ID><SCENE_CLASSIFICATION_TEXT>SC_{t}</SCENE_CLASSIFICATION_TEXT>"
                  f"<SCENE_CLASSIFICATION_INDEX>{i}</SCENE_CLASSIFICATION_INDEX></Scene_Classification_ID>\n"
                  for i, t in enumerate(scl_names))
    sat = {"S2A": "Sentinel-2A", "S2B": "Sentinel-2B", "S2C": "Sentinel-2C"}.get(cfg.mission, cfg.mission)
    quality = _quality_xml(scl_map) if scl_map is not None else ""
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{start}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{name}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{cfg.baseline}</PROCESSING_BASELINE>
      <GENERATION_TIME>{start}</GENERATION_TIME>
      <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
      <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
      <Datatake datatakeIdentifier="G{cfg.mission}_{cfg.date}_010203_N{cfg.baseline}">
        <SPACECRAFT_NAME>{sat}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{start}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>22</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Query_Options completeSingleTile="true"><PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT></Query_Options>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="{cfg.mission}_OPER_MSI_L2A_DS_SYNT_{cfg.date}_N{cfg.baseline}" granuleIdentifier="{cfg.mission}_OPER_MSI_L2A_TL_SYNT_{cfg.date}_{granule}_N{cfg.baseline}" imageFormat="JPEG2000">
{image_files}          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
      <Special_Values><SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX></Special_Values>
      <Image_Display_Order><RED_CHANNEL>3</RED_CHANNEL><GREEN_CHANNEL>2</GREEN_CHANNEL><BLUE_CHANNEL>1</BLUE_CHANNEL></Image_Display_Order>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
        <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
      {offsets}
      <Spectral_Information_List>
{spectral}      </Spectral_Information_List>
      <Scene_Classification_List>
{scl}      </Scene_Classification_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
{quality}</n1:Level-2A_User_Product>
"""


def _mtd_tl(cfg: SynthConfig, granule: str, epsg: int, ulx: float, uly: float, size: int) -> str:
    utm = f"WGS84 / UTM zone {epsg % 100}{'N' if epsg // 100 == 326 else 'S'}"
    sizes = "".join(f'      <Size resolution="{r}"><NROWS>{size * 10 // r}</NROWS><NCOLS>{size * 10 // r}</NCOLS></Size>\n'
                    for r in (10, 20, 60))
    geo = "".join(f'      <Geoposition resolution="{r}"><ULX>{ulx:g}</ULX><ULY>{uly:g}</ULY><XDIM>{r}</XDIM><YDIM>-{r}</YDIM></Geoposition>\n'
                  for r in (10, 20, 60))
    sensing = dt.datetime.strptime(cfg.date, "%Y%m%dT%H%M%S").strftime("%Y-%m-%dT%H:%M:%S.161Z")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-2A_Tile_Metadata.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">{cfg.mission}_OPER_MSI_L2A_TL_SYNT_{cfg.date}_{granule}_N{cfg.baseline}</TILE_ID>
    <SENSING_TIME metadataLevel="Standard">{sensing}</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>{utm}</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>
{sizes}{geo}    </Tile_Geocoding>
  </n1:Geometric_Info>
</n1:Level-2A_Tile_ID>
"""


def write_product(cfg: SynthConfig, out_dir) -> Path:
    """Write one synthetic L2A product (atomically) plus its CORINE raster; returns the .SAFE path."""
    if cfg.tile not in REAL_TILES:
        raise ValueError(f"unknown tile {cfg.tile!r}; known: {', '.join(REAL_TILES)}")
    if not 0 < cfg.tile_size_m <= S2_TILE_M:  # the command line refuses it where parsed; this guards the API
        raise ValueError(f"tile_size_m {cfg.tile_size_m}: a product is at most a Sentinel-2 tile, {S2_TILE_M} m")
    epsg, ulx, uly = REAL_TILES[cfg.tile]
    out_dir = output_folder(out_dir)
    name = product_name(cfg)
    final = out_dir / f"{name}.SAFE"
    if final.exists():
        return final
    truth, lc60, scl = render_scene(cfg)
    size = truth.shape[1]
    crs = f"EPSG:{epsg}"
    offset = 1000 if float(cfg.baseline) >= 4.0 else 0
    granule = f"L2A_{cfg.tile}_A010203_{cfg.date}"
    stem = f"{cfg.tile}_{cfg.date}"

    with atomic_path(final) as tmp:  # a product appears whole or not at all
        tmp.mkdir()
        img = tmp / "GRANULE" / granule / "IMG_DATA"
        files = []
        for res in (10, 20, 60):
            (img / f"R{res}m").mkdir(parents=True)
        for sub in ("AUX_DATA", "QI_DATA"):
            (tmp / "GRANULE" / granule / sub).mkdir()
        for sub in ("DATASTRIP", "HTML", "rep_info", "AUX_DATA"):
            (tmp / sub).mkdir()
        for b, band in enumerate(BANDS_SUPER):
            res = NATIVE[band]
            f = res // 10
            data = truth[b] if f == 1 else block_mean(truth[b], f)
            dn = np.clip(np.rint(data) + np.where(data > 0, offset, 0), 0, 65535).astype(np.uint16)
            rel = f"GRANULE/{granule}/IMG_DATA/R{res}m/{stem}_{band}_{res}m"
            _write_jp2(tmp / f"{rel}.jp2", dn, crs, Affine(res, 0, ulx, 0, -res, uly))
            files.append(rel)
        rel = f"GRANULE/{granule}/IMG_DATA/R20m/{stem}_SCL_20m"
        _write_jp2(tmp / f"{rel}.jp2", scl, crs, Affine(20, 0, ulx, 0, -20, uly))
        files.append(rel)
        # aerosol optical thickness and water vapour, as every L2A product carries at 10 m
        for aux, value in (("AOT", 120), ("WVP", 1450)):
            rel = f"GRANULE/{granule}/IMG_DATA/R10m/{stem}_{aux}_10m"
            _write_jp2(tmp / f"{rel}.jp2", np.full((size, size), value, np.uint16), crs, Affine(10, 0, ulx, 0, -10, uly))
            files.append(rel)
        files.sort(key=lambda p: (p.split("/")[-2], p))
        (tmp / "MTD_MSIL2A.xml").write_text(_mtd_msil2a(name, cfg, granule, files, scl))
        (tmp / "GRANULE" / granule / "MTD_TL.xml").write_text(_mtd_tl(cfg, granule, epsg, ulx, uly, size))
        (tmp / "manifest.safe").write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" version="esa/safe/sentinel/1.1/sentinel-2/msi/archive_l2a_user_product"><!-- synthetic: {name} seed={cfg.seed} --></xfdu:XFDU>\n')
        if cfg.write_truth:
            with rasterio.open(tmp / "truth_10m.tif", "w", driver="GTiff", width=size, height=size, count=12,
                               dtype="uint16", crs=crs, transform=Affine(10, 0, ulx, 0, -10, uly),
                               compress="deflate", predictor=2, tiled=True) as ds:
                ds.write(np.clip(np.rint(truth), 0, 65535).astype(np.uint16))
                ds.descriptions = BANDS_SUPER
    write_clc(out_dir / f"CLC_{cfg.tile}_{cfg.tile_size_m}m.tif", lc60, crs, Affine(60, 0, ulx, 0, -60, uly))
    return final


def write_clc(path: Path, lc60: np.ndarray, crs: str, transform: Affine) -> None:
    """The land-cover map as a CORINE raster with CLC codes (uint16, 0 = no data)."""
    if path.exists():
        return
    codes = np.asarray(CLC_CODES, np.uint16)[lc60]
    with atomic_path(path) as tmp, rasterio.open(
            tmp, "w", driver="GTiff", width=codes.shape[1], height=codes.shape[0], count=1, dtype="uint16",
            crs=crs, transform=transform, nodata=0, compress="deflate", tiled=True) as ds:
        ds.write(codes, 1)


def default_configs(n_products: int = 4, tile_size_m: int = 12_000, seed: int = 0, **kw) -> list[SynthConfig]:
    """The embedded default's products: the real tiles in turn, mixing old and new processing
    baselines; further products revisit the tiles 10 days later each round."""
    out = []
    for i in range(n_products):
        tile, date, mission, baseline = DEFAULT_SCENES[i % len(DEFAULT_SCENES)]
        if i >= len(DEFAULT_SCENES):
            d = dt.datetime.strptime(date, "%Y%m%dT%H%M%S") + dt.timedelta(days=10 * (i // len(DEFAULT_SCENES)))
            date = d.strftime("%Y%m%dT%H%M%S")
        out.append(SynthConfig(tile=tile, date=date, mission=mission, baseline=baseline,
                               tile_size_m=tile_size_m, seed=seed, **kw))
    return out


def write_default_set(out_dir, n_products: int = 4, tile_size_m: int = 12_000, seed: int = 0, **kw) -> list[Path]:
    """The embedded default (:func:`default_configs`) written into ``out_dir``."""
    output_folder(out_dir)  # before the first product is generated
    return [write_product(cfg, out_dir) for cfg in default_configs(n_products, tile_size_m, seed, **kw)]
