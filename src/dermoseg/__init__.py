"""dermoseg: dermoscopic image cleaning (black frame, hair), lesion segmentation, measurement and diagnosis.

Research tool, not a medical device.
"""

__version__ = "0.1.0"
