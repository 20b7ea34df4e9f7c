"""Tests for dbsal_backend.labelstudio.label_config: the configs it accepts, and hostile ones it refuses."""


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.labelstudio.label_config import (
    EXAMPLE_LABEL_CONFIG,
    MAX_CONFIG_CHARS,
    MAX_DEPTH,
    MAX_LABELS,
    MAX_TAGS,
    LabelConfig,
    LabelConfigError,
    parse_label_config,
)


def test_example_config_parses():
    config = parse_label_config(EXAMPLE_LABEL_CONFIG)
    assert config == LabelConfig(
        image_name="image",
        image_value="image",
        brush_name="tag",
        labels=["background", "road", "building", "vegetation", "sky"],
    )
    assert config.class_index == {"background": 0, "road": 1, "building": 2, "vegetation": 3,
                                  "sky": 4}


def test_other_names_nested_tags_and_extra_controls():
    xml = """
    <View>
      <Header value="Paint"/>
      <View style="display:flex">
        <image name="photo" value="$img_url"/>
      </View>
      <Choices name="quality" toName="photo"><Choice value="ok"/></Choices>
      <BrushLabels name="paint" toName="photo">
        <Label value="cat"/><Label value="dog"/><Label value="grass"/>
      </BrushLabels>
    </View>
    """
    config = parse_label_config(xml)
    assert (config.image_name, config.image_value, config.brush_name) == ("photo", "img_url",
                                                                          "paint")
    assert config.labels == ["cat", "dog", "grass"]


@pytest.mark.parametrize(
    "xml, reason",
    [
        ("<View><Image name='i' value='$i'/>", "malformed XML"),
        ("not xml at all", "malformed XML"),
        ("<View><BrushLabels name='b' toName='i'><Label value='a'/></BrushLabels></View>",
         "found 0 <Image>"),
        ("<View><Image name='i' value='$i'/><Image name='j' value='$j'/>"
         "<BrushLabels name='b' toName='i'><Label value='a'/></BrushLabels></View>",
         "found 2 <Image>"),
        ("<View><Image name='i' value='$i'/></View>", "found no <BrushLabels> and no <PolygonLabels>"),
        ("<View><Image name='i' value='$i'/>"
         "<BrushLabels name='b' toName='i'><Label value='a'/></BrushLabels>"
         "<BrushLabels name='c' toName='i'><Label value='a'/></BrushLabels></View>",
         "found 2 <BrushLabels>"),
        ("<View><Image name='i' value='$i'/>"
         "<BrushLabels name='b' toName='x'><Label value='a'/></BrushLabels></View>",
         'must name the image "i"'),
        ("<View><Image name='i' value='$i'/><BrushLabels name='b' toName='i'/></View>",
         "no <Label>"),
        ("<View><Image name='i' value='$i'/>"
         "<BrushLabels name='b' toName='i'><Label value='a'/><Label value='a'/></BrushLabels>"
         "</View>", "repeats the labels ['a']"),
        ("<View><Image name='i' value='$i'/>"
         "<BrushLabels name='b' toName='i'><Label/></BrushLabels></View>",
         'a <Label> of <BrushLabels> has no "value"'),
        ("<View><Image name='i' value='http://x/y.png'/>"
         "<BrushLabels name='b' toName='i'><Label value='a'/></BrushLabels></View>",
         "must name a task data key"),
        ("<View><Image value='$i'/>"
         "<BrushLabels name='b' toName='i'><Label value='a'/></BrushLabels></View>",
         '<Image> has no "name"'),
        ("<View><Image name='i' value='$i'/>"
         "<BrushLabels name='b'><Label value='a'/></BrushLabels></View>",
         '<BrushLabels> has no "toName"'),
    ],
)
def test_invalid_configs_raise_with_reason_and_example(xml, reason):
    with pytest.raises(LabelConfigError) as info:
        parse_label_config(xml)
    assert isinstance(info.value, ValueError)
    assert reason in str(info.value)
    assert "<BrushLabels" in str(info.value) and 'value="$image"' in str(info.value)


def test_entity_expansion_is_refused():
    xml = ('<!DOCTYPE v [<!ENTITY a "aaaaaaaaaa">]><View><Image name="i" value="$i"/>'
           '<BrushLabels name="b" toName="i"><Label value="&a;"/></BrushLabels></View>')
    with pytest.raises(LabelConfigError, match="malformed XML"):
        parse_label_config(xml)


def test_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="must be a str"):
        parse_label_config(b"<View/>")


# ---------------------------------------------------------------- hostile configs


def _config(labels, before="", inside_image=""):
    body = "".join(f'<Label value="{label}"/>' for label in labels)
    return (f'{before}<View><Image name="i" value="$i"/>{inside_image}'
            f'<BrushLabels name="b" toName="i">{body}</BrushLabels></View>')


@pytest.mark.parametrize("declaration", [
    '<?xml version="1.0" encoding="UTF-8"?>',
    "<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n",
    '<?xml version="1.0" encoding="ISO-8859-1"?>',
    '<?xml version="1.0" encoding="utf-16"?>',
    '<?xml version="1.0" encoding="no-such-codec"?>',
    '<?xml version="1.0"?>',
    '\ufeff<?xml version="1.0"?>',
    '\n  <?xml version="1.0" encoding="UTF-8"?>\n',
])
def test_an_xml_declaration_is_accepted(declaration):
    # The config is text already: whatever encoding the declaration names, labels read as written.
    config = parse_label_config(_config(["straße", "café", "道路"], before=declaration))
    assert config.labels == ["straße", "café", "道路"]


def test_too_long_config_is_refused_before_parsing():
    padding = "<!--" + "x" * MAX_CONFIG_CHARS + "-->"
    with pytest.raises(LabelConfigError, match=f"more than {MAX_CONFIG_CHARS}"):
        parse_label_config(_config(["a"], inside_image=padding))
    # Just under the limit (a comment pads it) is fine.
    fitting = _config(["a"], inside_image="<!--" + "x" * (MAX_CONFIG_CHARS - 200) + "-->")
    assert len(fitting) <= MAX_CONFIG_CHARS
    assert parse_label_config(fitting).labels == ["a"]


def test_label_count_limit_keeps_class_indices_below_ignore_index():
    assert MAX_LABELS == IGNORE_INDEX - 1
    labels = [f"c{i}" for i in range(MAX_LABELS)]
    config = parse_label_config(_config(labels))
    assert max(config.class_index.values()) == MAX_LABELS - 1 < IGNORE_INDEX
    with pytest.raises(LabelConfigError, match=f"{MAX_LABELS + 1} labels, more than {MAX_LABELS}"):
        parse_label_config(_config(labels + ["one too many"]))


def test_100000_labels_are_refused():
    with pytest.raises(LabelConfigError):
        parse_label_config(_config(str(i) for i in range(100_000)))


@pytest.mark.parametrize("labels", [
    [str(i) for i in range(MAX_TAGS - 10)],  # refused by the label limit
    ["x"] * (MAX_TAGS - 10),  # all duplicates: the old quadratic check pinned a core here
])
def test_many_labels_under_the_size_limit_are_refused(labels):
    xml = _config(labels)
    assert len(xml) <= MAX_CONFIG_CHARS
    with pytest.raises(LabelConfigError, match="labels, more than"):
        parse_label_config(xml)


def test_duplicates_are_found_among_many_labels():
    labels = [f"c{i}" for i in range(MAX_LABELS - 2)] + ["c7", "c100"]
    with pytest.raises(LabelConfigError, match=r"repeats the labels \['c100', 'c7'\]"):
        parse_label_config(_config(labels))


def test_too_many_tags_are_refused():
    filler = "<a/>" * (MAX_TAGS + 1)
    with pytest.raises(LabelConfigError, match=f"more than {MAX_TAGS} tags"):
        parse_label_config(_config(["a"], inside_image=filler))
    # The worst a config of the largest size can do: tiny tags, then the refusal, still fast.
    with pytest.raises(LabelConfigError):
        parse_label_config("<a/>" * (MAX_CONFIG_CHARS // 4 - 1))


def test_nesting_depth_limit():
    def nested(depth):
        inner = '<Image name="i" value="$i"/><BrushLabels name="b" toName="i"><Label value="a"/>' \
                '</BrushLabels>'
        return "<View>" * (depth - 2) + inner + "</View>" * (depth - 2)

    assert parse_label_config(nested(MAX_DEPTH)).labels == ["a"]  # Label sits at MAX_DEPTH
    with pytest.raises(LabelConfigError, match=f"more than {MAX_DEPTH} levels"):
        parse_label_config(nested(MAX_DEPTH + 1))
    # Deep nesting within the size limit: refused at once, no recursion error.
    depth = MAX_CONFIG_CHARS // 8
    with pytest.raises(LabelConfigError, match="levels"):
        parse_label_config("<a>" * depth + "</a>" * depth)


@pytest.mark.parametrize("xml", [
    # billion laughs
    '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">'
    ']><View><Image name="i" value="$i"/><BrushLabels name="b" toName="i"><Label value="&b;"/>'
    "</BrushLabels></View>",
    # external entity
    '<!DOCTYPE v [<!ENTITY e SYSTEM "file:///etc/passwd">]><View><Image name="i" value="$i"/>'
    '<BrushLabels name="b" toName="i"><Label value="x"/></BrushLabels><Header value="&e;"/>'
    "</View>",
    # parameter entity pulling an external DTD
    '<!DOCTYPE v [<!ENTITY % p SYSTEM "http://127.0.0.1:1/evil.dtd"> %p;]><View/>',
    # undefined entity
    '<View><Image name="i" value="$i"/><BrushLabels name="b" toName="i"><Label value="&nope;"/>'
    "</BrushLabels></View>",
])
def test_entities_are_refused(xml):
    with pytest.raises(LabelConfigError, match="malformed XML"):
        parse_label_config(xml)


@pytest.mark.parametrize("xml", ["", "\x00", "<View a='\ud800'/>", "<a>\udcff</a>",
                                 "<View></Image>", "<?xml version='1.0'?>", "<" * 1000])
def test_odd_text_is_a_label_config_error(xml):
    with pytest.raises(LabelConfigError):
        parse_label_config(xml)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_label_config_errors(text):
    try:
        parse_label_config(text)
    except LabelConfigError:
        pass


_VALID = _config(["road", "sky"])


@st.composite
def _mutations(draw):
    """A valid config with characters deleted, inserted, replaced or duplicated."""
    text = _VALID
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "repeat"]))
        piece = draw(st.sampled_from(["<", ">", "/", '"', "'", "&", "=", "<Label value='x'/>",
                                      "<Image name='j' value='$j'/>", "<!--", "-->", "<![CDATA[",
                                      "<!DOCTYPE v [<!ENTITY a 'b'>]>", "&a;", "\x00", "\ud800",
                                      "<?xml version='1.0'?>", "BrushLabels", "toName"])
                     | st.text(max_size=5))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 10)):]
        elif kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "replace":
            text = text[:at] + piece + text[at + len(piece):]
        else:
            end = draw(st.integers(at, len(text)))
            text = text[:end] + text[at:end] * draw(st.integers(1, 20)) + text[end:]
    return text


@settings(max_examples=200, deadline=None)
@given(_mutations())
def test_mutated_configs_raise_only_label_config_errors(text):
    try:
        config = parse_label_config(text)
    except LabelConfigError:
        return
    assert config.labels and len(set(config.labels)) == len(config.labels)
    assert len(config.labels) <= MAX_LABELS


def test_polygon_labels_with_the_same_labels_are_optional():
    brush = ('<BrushLabels name="b" toName="img"><Label value="x"/><Label value="y"/>'
             '</BrushLabels>')
    polygon = ('<PolygonLabels name="p" toName="img"><Label value="x"/><Label value="y"/>'
               '</PolygonLabels>')
    image = '<Image name="img" value="$image"/>'
    config = parse_label_config(f"<View>{image}{brush}{polygon}</View>")
    assert (config.polygon_name, config.brush_name, config.labels) == ("p", "b", ["x", "y"])
    assert parse_label_config(f"<View>{image}{brush}</View>").polygon_name is None
    other = polygon.replace('value="y"', 'value="z"')
    with pytest.raises(LabelConfigError, match="same labels"):
        parse_label_config(f"<View>{image}{brush}{other}</View>")
    with pytest.raises(LabelConfigError, match="at most one"):
        parse_label_config(f"<View>{image}{brush}{polygon}{polygon}</View>")
    elsewhere = polygon.replace('toName="img"', 'toName="x"')
    with pytest.raises(LabelConfigError, match="must name the image"):
        parse_label_config(f"<View>{image}{brush}{elsewhere}</View>")


LS_POLYGON_TEMPLATE = """<View>
  <Header value="Select label and click the image to start"/>
  <Image name="image" value="$image" zoom="true"/>
  <PolygonLabels name="label" toName="image"
                 strokeWidth="3" pointSize="small"
                 opacity="0.9">
    <Label value="Airplane" background="red"/>
    <Label value="Car" background="blue"/>
  </PolygonLabels>
</View>"""

LS_MASK_TEMPLATE = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Airplane" background="rgba(255, 0, 0, 0.7)"/>
    <Label value="Car" background="rgba(0, 0, 255, 0.7)"/>
  </BrushLabels>
</View>"""


def test_label_studios_two_segmentation_templates_parse_as_they_are():
    polygons = parse_label_config(LS_POLYGON_TEMPLATE)
    assert (polygons.brush_name, polygons.polygon_name) == (None, "label")
    assert polygons.labels == ["Airplane", "Car"]
    masks = parse_label_config(LS_MASK_TEMPLATE)
    assert (masks.brush_name, masks.polygon_name) == ("tag", None)
    assert masks.labels == polygons.labels


def test_aliases_hotkeys_and_other_controls_are_left_alone():
    xml = """<View>
      <Image name="image" value="$image"/>
      <PolygonLabels name="poly" toName="image" opacity="0.5">
        <Label value="Weed" alias="W" hotkey="w" background="#ff0000"/>
        <Label value="Crop" hotkey="c"/>
      </PolygonLabels>
      <BrushLabels name="brush" toName="image">
        <Label value="Weed" alias="W"/><Label value="Crop" alias="C"/>
      </BrushLabels>
      <Choices name="quality" toName="image"><Choice value="blurry"/></Choices>
      <TextArea name="notes" toName="image"/>
    </View>"""
    config = parse_label_config(xml)
    assert config.labels == ["Weed", "Crop"]
    assert config.class_index == {"Weed": 0, "Crop": 1, "W": 0, "C": 1}
    with pytest.raises(LabelConfigError, match='alias "W" names two labels'):
        parse_label_config(xml.replace('value="Crop" alias="C"', 'value="Crop" alias="W"', 1)
                           .replace('<Label value="Weed" alias="W"/>', '<Label value="Weed"/>'))
    with pytest.raises(LabelConfigError, match="also the values of other labels"):
        parse_label_config(xml.replace('alias="C"', 'alias="Weed"'))
    with pytest.raises(LabelConfigError, match="two labels the alias"):
        parse_label_config(xml.replace('hotkey="c"', 'alias="W"'))


def test_polygon_labels_elsewhere_and_no_segmentation_tool_are_refused():
    image = '<Image name="img" value="$image"/>'
    with pytest.raises(LabelConfigError, match="no <BrushLabels> and no <PolygonLabels>"):
        parse_label_config(f'<View>{image}<RectangleLabels name="r" toName="img">'
                           f'<Label value="a"/></RectangleLabels></View>')
    with pytest.raises(LabelConfigError, match='must name the image "img"'):
        parse_label_config(f'<View>{image}<PolygonLabels name="p" toName="other">'
                           f'<Label value="a"/></PolygonLabels></View>')
