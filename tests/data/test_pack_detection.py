import csv
import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from gluoncv.data import RecordFileDetection
from magiccards.data.labels import parse_detection_label
from magiccards.data.pack import pack
from PIL import Image

from ..helpers import labels_of, lst_rows, read_all


def voc_boxes(xml_path):
    """(size, [(name, xmin, ymin, xmax, ymax)]) straight from a VOC file."""
    root = ET.parse(xml_path).getroot()
    size = (int(root.findtext("size/width")), int(root.findtext("size/height")))
    objs = [(o.findtext("name"), *(float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")))
            for o in root.iter("object")]
    return size, objs


def test_raccoon_boxes_survive_within_a_thousandth(raccoon, tmp_path):
    r = pack(raccoon, tmp_path, val_fraction=0.2, seed=0, resize=256, workers=2, progress=False)
    assert r.classes == ["raccoon"]
    assert sum(r.images.values()) + r.skipped == len(list((raccoon / "annotations").glob("*.xml")))
    checked = 0
    for split in ("train", "validation"):
        dataset = RecordFileDetection(str(tmp_path / f"{split}.rec"))
        rows = lst_rows(tmp_path / f"{split}.lst")
        assert len(dataset) == len(rows) == r.images[split]
        for k, row in enumerate(rows):
            img, label = dataset[k]
            h, w = img.shape[:2]
            original = (int(float(row[3])), int(float(row[4])))  # the .lst keeps the file's own size
            assert min(h, w) == min(256, min(original))  # downscale only
            size, objs = voc_boxes(raccoon / "annotations" / (row[-1].split("/")[-1].rsplit(".", 1)[0] + ".xml"))
            expected = np.array([[x0 / size[0], y0 / size[1], x1 / size[0], y1 / size[1]] for _, x0, y0, x1, y1 in objs])
            got = label[:, :4] / np.array([w, h, w, h])
            assert label.shape == (len(objs), 5) and (label[:, 4] == 0).all()
            assert np.abs(got - expected).max() < 1e-3, row[-1]
            checked += 1
    assert checked == sum(r.images.values()) >= 20  # of the 24 photos in tests/data/files


def test_detection_header_layout(card_scenes, tmp_path):
    pack(card_scenes, tmp_path, val_fraction=0, workers=1, progress=False)
    for header, _ in read_all(tmp_path / "train.rec"):
        label = labels_of(header)
        head, objects = parse_detection_label(label)
        assert head.tolist() == [4, 5, 160, 160]
        assert header.flag == label.size
        assert ((objects[:, 1:] >= 0) & (objects[:, 1:] <= 1)).all()
        assert (objects[:, 3] > objects[:, 1]).all() and (objects[:, 4] > objects[:, 2]).all()


def _raccoon_subset(raccoon, n=12):
    files = sorted((raccoon / "annotations").glob("*.xml"))[:n]
    return [(x, *voc_boxes(x)) for x in files]


def _write_coco(raccoon, path):
    images, annotations = [], []
    for i, (x, size, objs) in enumerate(_raccoon_subset(raccoon)):
        images.append({"id": i, "file_name": x.stem + ".jpg", "width": size[0], "height": size[1]})
        annotations += [{"id": len(annotations), "image_id": i, "category_id": 7,
                         "bbox": [x0, y0, x1 - x0, y1 - y0]} for _, x0, y0, x1, y1 in objs]
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 7, "name": "raccoon"}]}))


def _write_sagemaker(raccoon, folder):
    folder.mkdir()
    for x, size, objs in _raccoon_subset(raccoon):
        doc = {"file": x.stem + ".jpg", "image_size": [{"width": size[0], "height": size[1], "depth": 3}],
               "annotations": [{"class_id": 0, "left": x0, "top": y0, "width": x1 - x0, "height": y1 - y0}
                               for _, x0, y0, x1, y1 in objs],
               "categories": [{"class_id": 0, "name": "raccoon"}]}
        (folder / f"{x.stem}.json").write_text(json.dumps(doc))


def _write_manifest(raccoon, path):
    """A Ground Truth bounding-box job's output: images named by their S3 URI."""
    with open(path, "w") as f:
        for x, size, objs in _raccoon_subset(raccoon):
            line = {"source-ref": f"s3://my-bucket/raccoons/{x.stem}.jpg",
                    "boxes": {"image_size": [{"width": size[0], "height": size[1], "depth": 3}],
                              "annotations": [{"class_id": 0, "left": x0, "top": y0, "width": x1 - x0, "height": y1 - y0}
                                              for _, x0, y0, x1, y1 in objs]},
                    "boxes-metadata": {"class-map": {"0": "raccoon"}, "type": "groundtruth/object-detection",
                                       "human-annotated": "yes", "job-name": "labeling-job/raccoons"}}
            f.write(json.dumps(line) + "\n")


def _write_csv(raccoon, path, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        for x, size, objs in _raccoon_subset(raccoon):
            for name, *box in objs:
                w.writerow([x.stem + ".jpg", *size, name, *box])


@pytest.mark.parametrize("fmt", ["coco", "sagemaker", "manifest", "csv", "csv-with-bom"])
def test_other_formats_give_the_same_records_as_voc(raccoon, tmp_path, fmt):
    voc_dir = tmp_path / "voc"
    (voc_dir / "annotations").mkdir(parents=True)
    for x, _, _ in _raccoon_subset(raccoon):
        (voc_dir / "annotations" / x.name).write_bytes(x.read_bytes())
    images = raccoon / "images"
    if fmt == "coco":
        src = tmp_path / "coco.json"
        _write_coco(raccoon, src)
    elif fmt == "sagemaker":
        src = tmp_path / "sm"
        _write_sagemaker(raccoon, src)
    elif fmt == "manifest":
        src = tmp_path / "output.manifest"
        _write_manifest(raccoon, src)
    else:  # a spreadsheet's "CSV UTF-8" starts with a byte-order mark
        src = tmp_path / "boxes.csv"
        _write_csv(raccoon, src, encoding="utf-8-sig" if fmt == "csv-with-bom" else "utf-8")
    ref = pack(voc_dir, tmp_path / "ref", images=images, val_fraction=0, workers=1, progress=False)
    got = pack(src, tmp_path / "got", images=images, val_fraction=0, workers=1, progress=False)  # layout recognised
    assert got.classes == ref.classes == ["raccoon"]
    assert got.images == ref.images
    want = {row[-1].split("/")[-1]: row[1:-1] for row in lst_rows(tmp_path / "ref" / "train.lst")}
    have = {row[-1].split("/")[-1]: row[1:-1] for row in lst_rows(tmp_path / "got" / "train.lst")}
    assert have == want


def test_auto_detects_each_format(raccoon, tmp_path):
    from magiccards.data.load import detect_format
    _write_coco(raccoon, tmp_path / "c.json")
    _write_csv(raccoon, tmp_path / "b.csv")
    _write_sagemaker(raccoon, tmp_path / "sm")
    _write_manifest(raccoon, tmp_path / "output.manifest")
    assert detect_format(tmp_path / "output.manifest") == "manifest"
    assert detect_format(raccoon) == "voc"
    assert detect_format(tmp_path / "c.json") == "coco"
    assert detect_format(tmp_path / "b.csv") == "csv"
    assert detect_format(tmp_path / "sm") == "sagemaker"


def _scene(path, size=(80, 60)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(list(path.name.encode())).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_annotation_class_ids_keep_their_order_and_folders_are_forgiven(tmp_path):
    """SageMaker's documented example: `file` carries the annotator's folder, ids 0..11 without names."""
    photos, notes = tmp_path / "photos", tmp_path / "sm" / "annotations"
    notes.mkdir(parents=True)
    for i in range(12):
        _scene(photos / f"p{i}.jpg")
        doc = {"file": f"your_image_directory/p{i}.jpg", "image_size": [{"width": 80, "height": 60, "depth": 3}],
               "annotations": [{"class_id": 11 - i, "left": 5, "top": 5, "width": 30, "height": 20}]}
        (notes / f"p{i}.json").write_text(json.dumps(doc))
    r = pack(tmp_path / "sm", tmp_path / "out", images=photos, val_fraction=0, workers=1, progress=False)
    assert r.classes == [str(i) for i in range(12)] and r.images["train"] == 12 and "annotation without image" not in r.problems
    cls_of = {row[-1].split("/")[-1]: float(row[5]) for row in lst_rows(tmp_path / "out" / "train.lst")}
    assert all(cls_of[f"p{i}.jpg"] == 11 - i for i in range(12))  # class_id stays the class index


def test_coco_categories_keep_their_id_order(tmp_path):
    for name in ("a", "b"):
        _scene(tmp_path / "images" / f"{name}.jpg")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 60},
                      {"id": 2, "file_name": "b.jpg", "width": 80, "height": 60}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [1, 1, 20, 20]},
                           {"id": 2, "image_id": 2, "category_id": 3, "bbox": [1, 1, 20, 20]}],
           "categories": [{"id": 3, "name": "zebra"}, {"id": 9, "name": "ant"}]}
    (tmp_path / "coco.json").write_text(json.dumps(doc))
    r = pack(tmp_path / "coco.json", tmp_path / "out", val_fraction=0, workers=1, progress=False)
    assert r.classes == ["zebra", "ant"]


def test_ground_truth_classification_manifest(card_folders, tmp_path):
    """An image-classification labelling job's output manifest packs like the same images in class folders."""
    folders = pack(card_folders, tmp_path / "folders", val_fraction=0, workers=1, progress=False)
    names = folders.classes[::-1]  # the job numbered the classes the other way round
    with open(tmp_path / "labels.manifest", "w") as f:
        for image in sorted(card_folders.rglob("*.jpg")):
            cls = names.index(image.parent.name)
            f.write(json.dumps({"source-ref": f"s3://bucket/cards/{image.name}", "card": cls,
                                "card-metadata": {"class-name": image.parent.name, "confidence": 0.95,
                                                  "type": "groundtruth/image-classification"}}) + "\n")
        f.write(json.dumps({"source-ref": "s3://bucket/cards/unlabelled.jpg"}) + "\n")
        f.write("{not json\n")
    images = tmp_path / "all"
    images.mkdir()
    for image in card_folders.rglob("*.jpg"):
        (images / image.name).symlink_to(image)
    r = pack(tmp_path / "labels.manifest", tmp_path / "manifest", images=images, val_fraction=0, workers=1, progress=False)
    assert r.task == "classification" and r.classes == names
    assert r.images == folders.images and r.counts == folders.counts
    assert r.problems == {"unlabelled line": 1, "corrupt annotation": 1}
    by_name = {row[-1].split("/")[-1]: float(row[1]) for row in lst_rows(tmp_path / "manifest" / "train.lst")}
    assert all(by_name[image.name] == names.index(image.parent.name) for image in card_folders.rglob("*.jpg"))
    (tmp_path / "two.txt").write_text("\n".join(names[:2]) + "\n")  # the other classes' images: skipped once each
    r = pack(tmp_path / "labels.manifest", tmp_path / "two", images=images, classes=tmp_path / "two.txt",
             val_fraction=0, workers=1, progress=False)
    left = sum(folders.counts["train"][n] for n in names[2:])
    assert r.skipped == left and r.problems["unknown class"] == left and "image without annotation" not in r.problems


def test_real_playing_card_photos_pack_and_one_class_merges_them(tmp_path):
    """The real photos kept in tests/data/files/playing-cards (LabelImg's VOC layout, six classes)."""
    import json
    from pathlib import Path

    from magiccards.data.pack import pack

    photos = Path(__file__).parent / "files" / "playing-cards"
    result = pack(photos, tmp_path / "rec", resize=320, seed=0, workers=1, progress=False, log=lambda line: None)
    assert sorted(result.classes) == ["ace", "jack", "king", "nine", "queen", "ten"]
    assert sum(result.images.values()) == 50
    one = pack(photos, tmp_path / "one", resize=320, seed=0, workers=1, one_class="card", progress=False,
               log=lambda line: None)
    assert one.classes == ["card"] and (tmp_path / "one" / "classes.txt").read_text().split() == ["card"]
    objects = sum(sum(c.values()) for c in result.counts.values())
    assert sum(sum(c.values()) for c in one.counts.values()) == objects
    assert json.loads((tmp_path / "one" / "pack-report.json").read_text())["classes"] == ["card"]


def test_crops_of_real_photos_pack_as_a_classification_split_by_photo(tmp_path):
    """pack --crops: every box becomes the square around it, labelled with its class; the photos are split first,
    with the same seed as a detection pack, so no photo gives crops to both splits."""
    from pathlib import Path

    from magiccards.data.pack import pack

    from magiccards.errors import DataError

    photos = Path(__file__).parent / "files" / "playing-cards"
    boxes = {xml.stem: voc_boxes(xml)[1] for xml in photos.glob("*.xml")}
    whole = pack(photos, tmp_path / "whole", resize=128, seed=0, workers=1, progress=False, log=lambda line: None)
    crops = pack(photos, tmp_path / "crops", resize=96, seed=0, workers=2, crops=True, progress=False,
                 log=lambda line: None)
    assert crops.task == "classification" and crops.classes == whole.classes
    assert sum(crops.images.values()) == sum(len(b) for b in boxes.values())  # every box, none lost as a duplicate
    photo_of = {split: {row[-1].split("#")[0] for row in lst_rows(tmp_path / "crops" / f"{split}.lst")}
                for split in ("train", "validation")}
    assert not photo_of["train"] & photo_of["validation"]
    assert photo_of["validation"] == {row[-1] for row in lst_rows(tmp_path / "whole" / "validation.lst")}
    for row in lst_rows(tmp_path / "crops" / "validation.lst"):  # each label is its box's class
        stem, k = Path(row[-1].split("#")[0]).stem, int(row[-1].split("#")[1])
        assert crops.classes[int(float(row[1]))] == boxes[stem][k][0]
    for _, data in read_all(tmp_path / "crops" / "validation.rec")[:10]:
        assert Image.open(io.BytesIO(data)).size == (96, 96)

    from magiccards.data.synth import synth
    synth(tmp_path / "folders", task="classification", count=8, classes=2, size=48, workers=1, progress=False)
    with pytest.raises(DataError, match="--crops cuts the boxes of a detection dataset"):
        pack(tmp_path / "folders", tmp_path / "x", crops=True, progress=False, log=lambda line: None)
    from tests.helpers import run_cli
    refused = run_cli("pack", tmp_path / "folders", tmp_path / "y", "--crops")
    assert refused.returncode == 1 and "error: --crops cuts the boxes of a detection dataset" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "y" / "train.rec").exists()


def test_a_crop_is_the_square_around_its_box_padded_at_the_edge(tmp_path):
    """A box at the photo's corner: the square around it (10 % wider each side) is filled with the edge's pixels."""
    from magiccards.data.pack import pack

    (tmp_path / "photos").mkdir()
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[0:40, 0:20] = (250, 0, 0)  # the card: 20 x 40 at the top-left corner
    Image.fromarray(rgb).save(tmp_path / "photos" / "one.png")
    (tmp_path / "photos" / "one.xml").write_text(
        "<annotation><filename>one.png</filename><size><width>200</width><height>100</height><depth>3</depth></size>"
        "<object><name>card</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>20</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>")
    pack(tmp_path / "photos", tmp_path / "rec", val_fraction=0, crops=True, quality=100, workers=1, progress=False,
         log=lambda line: None)
    (_, data), = read_all(tmp_path / "rec" / "train.rec")
    crop = np.asarray(Image.open(io.BytesIO(data)))
    assert crop.shape == (48, 48, 3)  # 40 px * 1.2, centred on the box
    assert crop[:, :12, 0].mean() > 200 and crop[:2, 14:26, 0].mean() > 200  # the edge repeated left and above
    assert crop[24:, 30:, 0].mean() < 60  # the photo beside the card
