"""A pay code as pictures a till's scanner reads: a QR code and a Code 128 barcode, as SVG.

Both are black on white with their quiet zones, scaled by the page (a ``viewBox`` in modules,
edges kept crisp), and sent to the page inline as ``data:`` URLs, so the code never becomes an
address a browser would log or cache. The QR code's modules come from ``qrcode``, the Code
128 symbols' bar patterns from ``python-barcode``'s table; the SVG is written here, one path
per picture, with nothing in it that could run.
"""

from __future__ import annotations

import base64

import qrcode
import qrcode.constants
from barcode.charsets import code128

#: Code 128 wants ten modules of white on each side; QR codes four.
CODE128_QUIET_MODULES = 10
QR_QUIET_MODULES = 4
#: The barcode's bar height, in modules: tall enough for a hand-held scanner's line to cross.
CODE128_HEIGHT_MODULES = 50


def _svg(width: int, height: int, path: str, *, stretch: bool = False) -> str:
    # A barcode may be stretched to the box the page gives it (wider bars read better); a
    # QR code keeps its square.
    aspect = ' preserveAspectRatio="none"' if stretch else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"{aspect} '
        f'shape-rendering="crispEdges"><rect width="{width}" height="{height}" fill="#fff"/>'
        f'<path fill="#000" d="{path}"/></svg>'
    )


def qr_svg(code: str) -> str:
    """``code`` as a QR code (error correction M, the smallest version that holds it)."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QR_QUIET_MODULES)
    qr.add_data(code)
    qr.make(fit=True)
    matrix = qr.get_matrix()  # includes the border
    runs = []
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    size = len(matrix)
    return _svg(size, size, "".join(runs))


def code128_modules(code: str) -> str:
    """``code`` (an even number of digits) in Code 128 code set C, two digits a symbol: the
    modules, ``1`` for a bar, start to stop.

    Encoded here rather than by ``barcode.Code128``, whose optimiser (0.16.1) takes a leading
    ``99`` for a switch to code set C and drops it: one pay code in a hundred would scan as
    another number.
    """
    if not (code.isdigit() and code.isascii() and len(code) % 2 == 0):
        raise ValueError("code set C encodes an even number of digits")
    values = [code128.START_CODES["C"]] + [int(code[i : i + 2]) for i in range(0, len(code), 2)]
    check = (values[0] + sum(i * v for i, v in enumerate(values[1:], 1))) % 103
    return "".join(code128.CODES[v] for v in [*values, check]) + code128.STOP + "11"


def code128_svg(code: str) -> str:
    """``code`` as a Code 128 barcode, without the text: the page writes the digits under it,
    in its own type."""
    modules = code128_modules(code)
    width = len(modules) + 2 * CODE128_QUIET_MODULES
    bars = []
    x = 0
    while x < len(modules):
        if modules[x] == "1":
            start = x
            while x < len(modules) and modules[x] == "1":
                x += 1
            left = start + CODE128_QUIET_MODULES
            bars.append(f"M{left} 0h{x - start}v{CODE128_HEIGHT_MODULES}h-{x - start}z")
        else:
            x += 1
    return _svg(width, CODE128_HEIGHT_MODULES, "".join(bars), stretch=True)


def data_url(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")
