"""FashionAI's schema as the short names the tests use (the package itself passes schemas around)."""
from fashion_gluon.schema import load_schema

FASHIONAI = load_schema("fashionai")
KEYPOINT_NAMES = FASHIONAI.keypoints
NUM_KEYPOINTS = FASHIONAI.num_keypoints
CATEGORIES = FASHIONAI.category_names
CATEGORY_KEYPOINTS = FASHIONAI.categories
FLIP_PAIRS = FASHIONAI.flip_pairs
NORM_PAIRS = FASHIONAI.norm_pairs
SKELETON = FASHIONAI.skeleton
SUBMISSION_COLUMNS = FASHIONAI.columns
category_mask = FASHIONAI.category_mask
category_indices = FASHIONAI.category_indices
flip_permutation = FASHIONAI.flip_permutation
num_keypoints = FASHIONAI.category_size
local_to_global = FASHIONAI.local_to_global
check_category = FASHIONAI.check_category
