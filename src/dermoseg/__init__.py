"""dermoseg: dermoscopic image cleaning (black frame, hair), lesion segmentation, measurement and diagnosis.

Research tool, not a medical device.
"""

import os

# PyTorch's OpenMP workers spin while waiting for work unless told otherwise, burning CPU that another process
# (or this one's reading and writing threads) needs; measured here, 50 small 2-thread convolutions separated by
# serial work cost 1.06 s of CPU spinning vs 0.33 s passive (issue #14). The OpenMP runtime reads this when
# torch is first imported, so it must be set before that; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
