"""Tests for dbsal_backend.label_config."""

import pytest

from dbsal_backend.label_config import (
    EXAMPLE_LABEL_CONFIG,
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
        ("<View><Image name='i' value='$i'/></View>", "found 0 <BrushLabels>"),
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
