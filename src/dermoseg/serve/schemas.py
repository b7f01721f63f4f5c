"""The JSON bodies of the ``/v1`` API (pydantic models): what ``/docs`` and ``/openapi.json`` document.

Measurement names are the ``results.csv`` column names of ``dermoseg segment``; lengths and areas are in pixels
of the uploaded image (after its EXIF rotation), ``*_mm`` in millimetres when ``mm_per_pixel`` was given.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str = Field(description="model file name")
    sha256: str = Field(description="sha256 of the model file (hex)")


class ImageInfo(BaseModel):
    file: str = Field(description="the file name the client sent (a label only; nothing is stored under it)")
    image_id: str = Field(description="its stem, reduced to safe characters: the CLI's image_id")
    width: int = Field(description="pixels")
    height: int = Field(description="pixels")


class Measurements(BaseModel):
    lesion_area_px: int = Field(description="lesion pixels")
    lesion_area_pct: float = Field(description="lesion share of the image, %")
    bbox_x: int | None = Field(description="bounding box left column, px (None when no lesion)")
    bbox_y: int | None = Field(description="bounding box top row, px")
    bbox_width: int = Field(description="px (0 when no lesion)")
    bbox_height: int = Field(description="px (0 when no lesion)")
    asymmetry_major: float | None = Field(description="ΔA/A folding over the major axis, [0, 1]")
    asymmetry_minor: float | None = Field(description="ΔA/A folding over the minor axis, [0, 1]")
    compactness: float | None = Field(description="border irregularity P²/(4πA), ≈ 1 for a disc")
    perimeter_px: float | None = Field(description="border length, px")
    colour_count: int = Field(description="how many of the six ABCD colours are present (0–6)")
    colours: list[str] = Field(description="their names")
    diameter_px: float | None = Field(description="largest diameter, px")
    diameter_mm: float | None = Field(description="largest diameter, mm (None without mm_per_pixel)")
    perimeter_mm: float | None = Field(description="border length, mm (None without mm_per_pixel)")
    area_mm2: float | None = Field(description="lesion area, mm² (None without mm_per_pixel)")
    mm_per_pixel: float | None = Field(description="the pixel size given, mm")


class Options(BaseModel):
    threshold: float = Field(description="lesion where probability > threshold")
    tta: bool = Field(description="flip test-time augmentation, as applied (the model file's default if not given)")
    preprocess: bool = Field(description="black-frame and hair removal, as applied (the model file's default if not "
                             "given)")


class Diagnosis(BaseModel):
    probabilities: dict[str, float] = Field(description="calibrated probability of each class (sum 1)")
    top_class: str
    classes: list[str] = Field(description="MEL, NV, BCC, AKIEC, BKL, DF, VASC (ISIC 2018 Task 3 order)")
    disclaimer: str = Field(description="research use only: not a diagnosis")
    model: ModelRef
    warning: str | None = Field(None, description="why the image looks unreliable (diagnose only; see "
                                "Segmentation.warning for analyze)")
    seconds: float | None = Field(None, description="processing time, s (diagnose only)")


class Segmentation(BaseModel):
    image: ImageInfo
    mask_png: str = Field(description="base64 PNG, 0/255, the image's size: the file `dermoseg segment` writes")
    contour: list[list[int]] = Field(description="outer lesion contour, [[x, y], …] pixel coordinates")
    measurements: Measurements
    mean_lesion_probability: float
    warning: str | None = Field(description="why the result may be unreliable (tiny/blank image, no lesion …)")
    quality: dict | None = Field(description="image-quality flag, where the library gives one")
    options: Options
    model: ModelRef
    seconds: float = Field(description="processing time, s (queueing and upload excluded)")
    csv: str = Field(description="header and row of `dermoseg segment`'s results.csv for this image")
    diagnosis: Diagnosis | None = Field(None, description="with /v1/analyze only")


class ModelInfo(BaseModel):
    task: str = Field(description="segmentation or classification")
    name: str
    sha256: str
    headline: list[str] = Field(description="headline figures from the model card")


class Models(BaseModel):
    models: list[ModelInfo]
    disclaimer: str


class Health(BaseModel):
    status: str
    version: str
    busy: int = Field(description="requests being processed or waiting")
    capacity: int = Field(description="requests admitted at once; more get 503")
    max_upload_bytes: int
    max_pixels: int
    auth: bool = Field(description="whether /v1 needs a bearer token")


class Error(BaseModel):
    detail: str = Field(description="what went wrong, in plain words (never a traceback)")


UPLOAD_ERRORS = {
    401: {"model": Error, "description": "a token is required and was missing or wrong"},
    408: {"model": Error, "description": "the upload stalled: no part of it arrived for upload_timeout_seconds"},
    413: {"model": Error, "description": "upload larger than max_upload_bytes, or image with more than max_pixels"},
    415: {"model": Error, "description": "not an image (the content is decoded; the name and type are ignored)"},
    422: {"model": Error, "description": "empty or truncated image, more than one image part, or an invalid option"},
    503: {"model": Error, "description": "the work queue is full; retry after the Retry-After seconds"},
}
