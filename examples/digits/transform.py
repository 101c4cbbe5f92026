"""The digits example's feature transform: a PNG image in, 64 pixel intensities out.

Configured as ``[features] transform = "examples.digits.transform:pixels"``. An event is
``{"id": ..., "x": {"image": <PNG bytes>}, "ts": ...}``: msgpack carries the image as ``bin``
(``bytes``), JSON as a base64 string; both are accepted.

>>> import io
>>> from PIL import Image
>>> buffer = io.BytesIO()
>>> Image.new("L", (8, 8), color=255).save(buffer, format="PNG")
>>> features = pixels({"image": buffer.getvalue()})
>>> len(features), features["p0"], features["p63"]
(64, 1.0, 1.0)
"""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image

#: The images are 8 x 8 grey levels, as in scikit-learn's digits.
SIZE = (8, 8)

#: The feature names :func:`pixels` returns, in row-major pixel order: the column order of a
#: model trained offline on these features (``riverbed.import_model(..., features=PIXEL_NAMES)``).
PIXEL_NAMES: tuple[str, ...] = tuple(f"p{i}" for i in range(SIZE[0] * SIZE[1]))


def pixels(x: dict) -> dict[str, float]:
    """``x["image"]`` (PNG bytes or base64 text) as ``{"p0": ..., "p63": ...}`` in ``[0, 1]``.

    Raises (and riverbed dead-letters the event with reason ``transform_failed``) when the image
    is missing, not a PNG/decodable image, or not 8 x 8.
    """
    data = x["image"]
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"'image' is neither PNG bytes nor base64 text ({exc})") from None
    with Image.open(io.BytesIO(data)) as image:
        if image.size != SIZE:
            raise ValueError(f"expected an 8x8 image, got {image.size[0]}x{image.size[1]}")
        grey = image.convert("L")
        values = grey.tobytes()
    return {name: v / 255.0 for name, v in zip(PIXEL_NAMES, values)}
