"""Opens zarrshare viewer links in a real Neuroglancer, in headless Chromium, and reports what it
loaded and drew.

usage: neuroglancer_view.py SPEC_JSON
SPEC_JSON: {"views": [{"viewer_url": ..., "paint": PAINT or absent}, ...]}
  viewer_url  a link as the API hands it out: <neuroglancer>#!<state URL>. Only the state URL is
              used: the state is fetched from it (as Neuroglancer would) and opened in the
              Neuroglancer client that the `neuroglancer` package serves, so every data source
              in it is read by the browser straight from the chunk function.
  PAINT       {"layer": name, "segment": id, "box": [[x0, y0, z0], [x1, y1, z1]]}: a block of
              that segment, painted into that segmentation layer. Two more screenshots show
              that layer alone, the segment in pure green, in one xy panel: with the camera in
              the block's z range, centred on the block's right edge (the block must be drawn,
              left of the centre and level with it), and with the camera on a z plane outside
              it (nothing may be drawn).

Prints one JSON report: for each view, each layer's name, type and the state of its data
sources as Neuroglancer holds them ("loaded" or "error: ..."), the number of point and line
annotations Neuroglancer parsed from each annotation layer, statistics of a screenshot of the
view as linked, and for PAINT the two probes. Exits non-zero if Neuroglancer never finished
loading a view.

The browser is Debian's Chromium (/usr/bin/chromium, driven through chromedriver by
selenium), rendering WebGL with SwiftShader; Neuroglancer's own screenshot waits until every
visible chunk has been loaded and drawn.
"""
import json
import sys
import time
import urllib.parse
import urllib.request

import neuroglancer
import neuroglancer.webdriver
import numpy as np

SIZE = (640, 480)
LOAD_TIMEOUT_S = 60

# What Neuroglancer holds of each layer: its data sources' load states and, for annotation
# layers, the annotations it parsed (type 0 is a point, 1 a line).
LAYERS_JS = """
return window.viewer.layerManager.managedLayers.map(m => {
  const layer = m.layer;
  const sources = layer ? layer.dataSources.map(d => {
    const s = d.loadState;
    if (s === undefined) return 'loading';
    if (s.error !== undefined) return 'error: ' + s.error.message;
    return 'loaded';
  }) : ['loading'];
  const local = layer && layer.localAnnotations;
  let points = null, lines = null;
  if (local) {
    points = 0; lines = 0;
    for (const a of local) { if (a.type === 0) points++; else if (a.type === 1) lines++; }
  }
  return {name: m.name, type: layer ? layer.type : null, sources, points, lines};
});
"""


def state_url_of(viewer_url):
    base, sep, fragment = viewer_url.partition("#!")
    if not sep:
        raise SystemExit(f"not a Neuroglancer link with a state URL: {viewer_url}")
    return urllib.parse.unquote(fragment)


def wait_loaded(driver):
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while True:
        layers = driver.execute_script(LAYERS_JS)
        if layers and all(s != "loading" for layer in layers for s in layer["sources"]):
            return layers
        if time.monotonic() > deadline:
            raise SystemExit(f"Neuroglancer did not finish loading: {json.dumps(layers)}")
        time.sleep(0.2)


def screenshot(viewer):
    reply = viewer.screenshot(size=list(SIZE)).screenshot
    pixels = reply.image_pixels[..., :3].astype(np.int32)
    return pixels


def stats(pixels):
    flat = pixels.reshape(-1, 3)
    return {
        "width": int(pixels.shape[1]),
        "height": int(pixels.shape[0]),
        "distinct_colors": int(len(np.unique(flat, axis=0))),
        "nonblack_fraction": float((flat.max(axis=1) > 16).mean()),
    }


def green(pixels):
    """Where the painted segment is drawn: pure green over black, at whatever opacity."""
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    mask = (g > 40) & (r < 12) & (b < 12)
    ys, xs = np.nonzero(mask)
    out = {"pixels": int(mask.sum())}
    if len(xs):
        out["centroid"] = [float(xs.mean()), float(ys.mean())]
        out["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    return out


def probe(viewer, driver, state, paint):
    (x0, y0, z0), (x1, y1, z1) = paint["box"]
    alone = json.loads(json.dumps(state))
    for layer in alone["layers"]:
        layer["visible"] = layer["name"] == paint["layer"]
        if layer["name"] == paint["layer"]:
            layer["segments"] = [str(paint["segment"])]
            layer["segmentColors"] = {str(paint["segment"]): "#00ff00"}
            layer["selectedAlpha"] = 1.0
    alone["layout"] = "xy"
    # No green cross-hair axis line, no scale bar: only the segment may be green.
    alone["showAxisLines"] = False
    alone["showScaleBar"] = False
    alone.pop("crossSectionOrientation", None)
    # One screen pixel per voxel (x and y have the same voxel size here): the 640x480 panel
    # shows 640x480 voxels around the camera.
    alone["crossSectionScale"] = 1.0
    out = {}
    for name, z in (("inside", (z0 + z1) / 2), ("outside", z1 + 8)):
        alone["position"] = [x1, (y0 + y1) / 2, z]
        viewer.set_state(neuroglancer.ViewerState(alone))
        wait_loaded(driver)
        out[name] = green(screenshot(viewer))
    out["panel_centre"] = [SIZE[0] / 2, SIZE[1] / 2]
    return out


def main():
    spec = json.loads(sys.argv[1])
    neuroglancer.set_server_bind_address("127.0.0.1")
    viewer = neuroglancer.Viewer()
    webdriver = neuroglancer.webdriver.Webdriver(
        viewer,
        headless=True,
        browser="chrome",
        browser_binary_path="/usr/bin/chromium",
        window_size=SIZE,
        docker=True,  # --no-sandbox (root) and no GPU
        print_logs=False,
        extra_command_line_args=[
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )
    driver = webdriver.driver
    reports = []
    try:
        for view in spec["views"]:
            with urllib.request.urlopen(state_url_of(view["viewer_url"])) as response:
                state = json.load(response)
            viewer.set_state(neuroglancer.ViewerState(state))
            layers = wait_loaded(driver)
            report = {"layers": layers, "screenshot": stats(screenshot(viewer))}
            if view.get("paint"):
                report["paint"] = probe(viewer, driver, state, view["paint"])
            reports.append(report)
    finally:
        driver.quit()
    print(json.dumps(reports))


if __name__ == "__main__":
    main()
