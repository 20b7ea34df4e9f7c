"""CamVid as the browser and latency benchmarks show it to Label Studio: its 11 classes in the
order of the data set's label values (../shared/data/camvid/README.md), the void value, and the
two label configs (brush masks alone, or brush masks and polygons over the same classes)."""

CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
           "Pedestrian", "Bicyclist"]  # fmt: skip
VOID = 11
_LABELS = "".join(f'<Label value="{c}"/>' for c in CLASSES)
BRUSH = ('<View><Image name="image" value="$image" zoom="true"/>'
         f'<BrushLabels name="tag" toName="image">{_LABELS}</BrushLabels></View>')
POLYGONS = BRUSH.replace("</View>", f'<PolygonLabels name="poly" toName="image">{_LABELS}'
                                    "</PolygonLabels></View>")
