"""Fixture builders for the chest X-ray tests: real PNG/JPEG/DICOM files in each native layout.

Metadata files keep the verbatim header quirks of the distributed files (docs/xray.md) (NIH bracket commas,
BBox trailing commas, Google CRLF line ends, SIIM's leading-space column, CheXpert blanks and
-1.0, PadChest's unnamed index column). Builders are reached through the ``xray`` fixture.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

# --- files ---------------------------------------------------------------------------------------


def image_array(seed: int, size: int = 24, high: int = 255) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, high + 1, size=(size, size)).astype(np.uint16 if high > 255 else np.uint8)


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")  # uint16 arrays give 16-bit grey PNGs
    return path


def write_jpeg(path: Path, array: np.ndarray, rgb: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert("RGB") if rgb else image).save(path, format="JPEG", quality=95)
    return path


def write_dicom(
    path: Path,
    array: np.ndarray,
    *,
    syntax: str = "explicit",
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    view: str | None = "PA",
    patient: str = "anon",
    sop_uid: str | None = None,
) -> Path:
    """Write a DICOM file with pydicom: uncompressed (explicit/implicit VR), RLE, JPEG 2000
    lossless (pydicom encoders) or JPEG baseline (a Pillow JPEG codestream, encapsulated)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit,
                             RLELossless, SecondaryCaptureImageStorage, generate_uid)

    path.parent.mkdir(parents=True, exist_ok=True)
    bits = bits_stored or (8 if array.dtype.itemsize == 1 else 16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.PatientID = patient
    ds.Modality = "CR"
    if view is not None:
        ds.ViewPosition = view
    if signed:
        array = array.astype(np.int16)
    ds.set_pixel_data(array, photometric, bits)
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if syntax == "explicit":
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    elif syntax == "implicit":
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif syntax == "rle":
        ds.compress(RLELossless, generate_instance_uid=False)
    elif syntax == "j2k":
        ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    elif syntax == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(array.astype(np.uint8)).save(buffer, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    else:
        raise ValueError(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_text(path: Path, text: str, *, crlf: bool = False, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (text.replace("\n", "\r\n") if crlf else text).encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


# --- collections ---------------------------------------------------------------------------------

NIH_HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
NIH_ROWS = [
    ("00000001_000.png", "Cardiomegaly", 0, 1, "PA"),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, 1, "PA"),
    ("00000002_000.png", "No Finding", 0, 2, "PA"),
    ("00000003_000.png", "Hernia", 0, 3, "AP"),
    ("00000003_001.png", "Infiltration|Nodule|Pleural_Thickening", 1, 3, "AP"),
    ("00000004_000.png", "Mass|Pneumonia|Pneumothorax", 0, 4, "PA"),
    ("00000005_000.png", "Effusion|Atelectasis|Consolidation|Edema|Fibrosis", 0, 5, "PA"),
]


def make_nih(root: Path, layout: str = "flat") -> Path:
    lines = [NIH_HEADER] + [f"{img},{labels},{fu},{pid},{50 + fu},M,{view},2682,2749,0.14300000000000002,0.14300000000000002"
                            for img, labels, fu, pid, view in NIH_ROWS]
    write_text(root / "Data_Entry_2017_v2020.csv", "\n".join(lines) + "\n")
    write_text(root / "BBox_List_2017.csv", "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
               "00000001_000.png,Cardiomegaly,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661\n"
               "00000003_001.png,Infiltrate,10,20,30,40\n"
               "00000003_001.png,Nodule,1.5,2.5,3,4\n")
    write_text(root / "train_val_list.txt", "\n".join(r[0] for r in NIH_ROWS[:5]) + "\n")
    write_text(root / "test_list.txt", "\n".join(r[0] for r in NIH_ROWS[5:]) + "\n")
    for i, (img, *_rest) in enumerate(NIH_ROWS):
        folder = root / "images" if layout == "flat" else root / f"images_{1 + i % 2:03d}" / "images"
        write_png(folder / img, image_array(i))
    google = NIH_HEADER + ",Fracture,Pneumothorax,Airspace opacity,Nodule or mass,Set Id\n"
    google += "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143,NO,NO,YES,NO,test\n"
    google += "00000002_000.png,No Finding,0,2,80,M,PA,2500,2048,0.171,0.171,YES,NO,NO,YES,val\n"
    google += "00000003_000.png,Hernia,0,3,81,F,AP,3056,2544,0.139,0.139,NO,YES,YES,NO,test\n"
    write_text(root / "google2019_nih-chest-xray-labels.csv.gz", google, crlf=True, gz=True)
    return root


CHEXPERT_HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices"
CHEXPERT_ROWS = [
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
    "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Female,83,Frontal,AP,,,,1.0,,,-1.0,,,,,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg,Female,83,Lateral,,,,,1.0,,,-1.0,,,,,,1.0,",
    "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Male,41,Frontal,PA,1.0,-1.0,,0.0,,,,,-1.0,,,1.0,,-1.0",
    "CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg,Male,0,Frontal,,,1.0,0.0,,1.0,0.0,,1.0,,1.0,0.0,,,",
]


def make_chexpert(base: Path) -> Path:
    root = base / "CheXpert-v1.0-small"
    write_text(root / "train.csv", "\n".join([CHEXPERT_HEADER, *CHEXPERT_ROWS]) + "\n")
    for i, row in enumerate(CHEXPERT_ROWS):
        rel = row.split(",")[0].split("/", 1)[1]
        write_jpeg(root / rel, image_array(10 + i))
    return root


MIMIC_LABELS = ("subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,Lung Lesion,"
                "Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices\n"
                "10000032,50414267,,,,,,,,,1.0,,,,,1.0\n"
                "10000764,57375967,,,1.0,,,,,,,,,-1.0,,\n"
                "10000898,50771383,0.0,1.0,,,,,,-1.0,,1.0,,,,\n")
MIMIC_META = ("dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,StudyTime,"
              "ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning\n"
              "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,CHEST (PA AND LAT),postero-anterior,Erect\n"
              "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962,10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531,CHEST (PA AND LAT),lateral,Erect\n"
              "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4,10000764,57375967,CHEST (PORTABLE AP),AP,2544,3056,21321207,000000,CHEST (PORTABLE AP),antero-posterior,\n"
              "a6b5b2f3-00000000-00000000-00000000-00000001,10000898,50771383,CHEST (PA AND LAT),,3056,2544,21900101,000000,CHEST,,\n"
              "b7c6c3f4-00000000-00000000-00000000-00000002,10000898,50771383,CHEST (PA AND LAT),PA,3056,2544,21900101,000000,CHEST,postero-anterior,Erect\n")
MIMIC_SPLIT = ("dicom_id,study_id,subject_id,split\n"
               "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014,50414267,10000032,train\n"
               "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962,50414267,10000032,train\n"
               "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4,57375967,10000764,validate\n"
               "a6b5b2f3-00000000-00000000-00000000-00000001,50771383,10000898,test\n"
               "b7c6c3f4-00000000-00000000-00000000-00000002,50771383,10000898,test\n")


def make_mimic(root: Path) -> Path:
    write_text(root / "mimic-cxr-2.0.0-chexpert.csv.gz", MIMIC_LABELS, gz=True)
    write_text(root / "mimic-cxr-2.0.0-metadata.csv.gz", MIMIC_META, gz=True)
    write_text(root / "mimic-cxr-2.0.0-split.csv.gz", MIMIC_SPLIT, gz=True)
    for i, line in enumerate(MIMIC_META.splitlines()[1:]):
        dicom_id, subject, study = line.split(",")[:3]
        write_jpeg(root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom_id}.jpg", image_array(20 + i))
    return root


PADCHEST_HEADER = (",ImageID,ImageDir,StudyDate_DICOM,StudyID,PatientID,PatientBirth,PatientSex_DICOM,ViewPosition_DICOM,Projection,"
                   "MethodProjection,Pediatric,Modality_DICOM,Manufacturer_DICOM,PhotometricInterpretation_DICOM,PixelRepresentation_DICOM,"
                   "PixelAspectRatio_DICOM,SpatialResolution_DICOM,BitsStored_DICOM,WindowCenter_DICOM,WindowWidth_DICOM,Rows_DICOM,"
                   "Columns_DICOM,XRayTubeCurrent_DICOM,Exposure_DICOM,ExposureInuAs_DICOM,ExposureTime,RelativeXRayExposure_DICOM,ReportID,"
                   "Report,MethodLabel,Labels,Localizations,LabelsLocalizationsBySentence,labelCUIS,LocalizationsCUIS")
# (image, dir, patient, birth, projection, labels cell (already CSV-quoted when needed))
PADCHEST_ROWS = [
    ("20536686640136348236148679891455886468_k6ga29.png", "0", "p1", "1930.0", "PA", "['normal']"),
    ("135803415504923515076821959678074435083_fzis7d.png", "0", "p1", "1930.0", "L", "\"['pleural effusion', 'cardiomegaly']\""),
    ("113855343774216031107737439268243531979_3k951l.png", "1", "p2", "1950.0", "AP_horizontal", "\"['infiltrates', 'air bronchogram']\""),
    ("216840111366964012819207061112010307142602253_04-014-084.png", "1", "p3", "1960.0", "PA", "['cardiomegaly']"),
    ("100000000000000000000000000000000000001_aaaaaa.png", "1", "p4", "2012.0", "PA", "['pneumonia']"),
    ("100000000000000000000000000000000000002_bbbbbb.png", "0", "p5", "1970.0", "PA", ""),
    ("100000000000000000000000000000000000003_cccccc.png", "0", "p6", "1945.0", "PA", "\"['pleural thickening', 'hiatal hernia', 'rib fracture']\""),
    ("100000000000000000000000000000000000004_dddddd.png", "1", "p7", "None", "PA", "['pulmonary mass']"),
    ("100000000000000000000000000000000000005_eeeeee.png", "1", "p6", "1945.0", "AP", "\"['nodule', 'emphysema', 'pulmonary fibrosis']\""),
]


def make_padchest(root: Path) -> Path:
    lines = [PADCHEST_HEADER]
    for i, (image, folder, patient, birth, projection, labels) in enumerate(PADCHEST_ROWS):
        lines.append(f"{i},{image},{folder},2014091{i},study{i},{patient},{birth},F,POSTEROANTERIOR,{projection},Manual review of DICOM fields,"
                     f"No,CR,ImagingDynamicsCompanyLtd,MONOCHROME2,0,None,None,12,2092,2251,1728,1872,250,2,2500,10,-1.42,{4765777 + i},"
                     f" sin hallazg patolog edad pacient .,Physician,{labels},[],\"[['normal'], ['normal']]\",[],[]")
        write_png(root / folder / image, image_array(30 + i, high=65535))
    write_text(root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", "\n".join(lines) + "\n", gz=True)
    return root


RSNA_PATIENTS = [  # patient, view, boxes
    ("0004cfab-14fd-4e49-80ba-63a80b6bddd6", "PA", []),
    ("00436515-870c-4b36-a041-de91049b9ab4", "AP", [(264.0, 152.0, 213.0, 379.0), (562.0, 152.0, 256.0, 453.0)]),
    ("00313ee0-9eaa-42f4-b0ab-c148ed3241cd", "PA", [(10.0, 20.0, 5.0, 6.0)]),
    ("003d8fa0-6bf1-40ed-b54c-ac657f8495c5", "AP", []),
]


def make_rsna(root: Path) -> Path:
    lines = ["patientId,x,y,width,height,Target"]
    headers = [",BodyPartExamined,ConversionType,Filename,InstanceNumber,Modality,PatientAge,PatientID,PatientOrientation,PatientSex,PixelSpacing,SamplesPerPixel,SeriesNumber,ViewPosition"]
    for i, (patient, view, boxes) in enumerate(RSNA_PATIENTS):
        lines += [f"{patient},{x},{y},{w},{h},1" for x, y, w, h in boxes] or [f"{patient},,,,,0"]
        headers.append(f"{i},CHEST,WSD,{patient}.dcm,1.0,CR,43,{patient},,F,0.168,1.0,1.0,{view}")
        write_dicom(root / "stage_2_train_images" / f"{patient}.dcm", image_array(40 + i), view=view, patient=patient,
                    syntax="jpeg" if i % 2 else "explicit")
    write_text(root / "stage_2_train_labels.csv", "\n".join(lines) + "\n")
    write_text(root / "stage_2_detailed_class_info.csv", "patientId,class\n" + "".join(
        f"{p},{'Lung Opacity' if b else 'Normal'}\n" for p, _, b in RSNA_PATIENTS))
    write_text(root.parent / "rsna_headers" / "kaggle_stage_2_train_images_dicom_headers.csv.gz", "\n".join(headers) + "\n", gz=True)
    return root


SIIM_IMAGES = [  # (SOPInstanceUID, rle rows); images are 8x8, runs are relative and column-major
    ("1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819", ["-1"]),
    ("1.2.276.0.7230010.3.1.4.8323329.13666.1517875247.117800", ["1 2 3 1", "40 3"]),
    ("1.2.276.0.7230010.3.1.4.8323329.11028.1517875229.983789", ["9 4"]),
]


def make_siim(root: Path) -> Path:
    lines = ["ImageId, EncodedPixels"]
    for i, (uid, runs) in enumerate(SIIM_IMAGES):
        lines += [f"{uid},{r}" for r in runs]
        study, series = uid.replace(".4.", ".2.", 1), uid.replace(".4.", ".3.", 1)
        write_dicom(root / "dicom-images-train" / study / series / f"{uid}.dcm", image_array(50 + i, size=8), sop_uid=uid,
                    patient=f"pat{i}", view="PA" if i != 2 else "AP", syntax="rle" if i == 1 else "explicit")
    write_text(root / "train-rle.csv", "\n".join(lines) + "\n")
    return root


VINDR_ROWS = [
    "50a418190bc3fb1ef1633bf9678929b3,No finding,14,R11,,,,",
    "50a418190bc3fb1ef1633bf9678929b3,No finding,14,R7,,,,",
    "9a5094b2563a1ef3ff50dc5c7ff71345,Cardiomegaly,3,R10,691.0,1375.0,1653.0,1831.0",
    "9a5094b2563a1ef3ff50dc5c7ff71345,Pleural effusion,10,R9,10.0,20.0,30.0,40.0",
    "9a5094b2563a1ef3ff50dc5c7ff71345,No finding,14,R8,,,,",
    "051132a778e61a86eb147c7c6f564dfe,Aortic enlargement,0,R10,1.0,2.0,3.0,4.0",
    "051132a778e61a86eb147c7c6f564dfe,Pleural thickening,11,R9,5.0,6.0,7.0,8.0",
    "051132a778e61a86eb147c7c6f564dfe,Lung Opacity,7,R9,1.0,1.0,2.0,2.0",
    "051132a778e61a86eb147c7c6f564dfe,Other lesion,9,R8,3.0,3.0,9.0,9.0",
]


def make_vindr(root: Path) -> Path:
    write_text(root / "train.csv", "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n" + "\n".join(VINDR_ROWS) + "\n")
    ids = list(dict.fromkeys(r.split(",")[0] for r in VINDR_ROWS))
    write_dicom(root / "train" / f"{ids[0]}.dicom", image_array(60, high=4095), bits_stored=12, photometric="MONOCHROME1",
                window=(2048.0, 1024.0), view=None)
    write_dicom(root / "train" / f"{ids[1]}.dicom", image_array(61, size=64, high=65535), syntax="j2k", view=None)
    write_dicom(root / "train" / f"{ids[2]}.dicom", image_array(62), syntax="rle", photometric="MONOCHROME1", view=None)
    return root


def openi_report(uid: str, automatic: list[str], images: list[str]) -> str:
    mesh = "".join(f"<automatic>{a}</automatic>" for a in automatic)
    parents = "".join(f'<parentImage id="{i}"><figureId>F1</figureId></parentImage>' for i in images)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<eCitation><meta type="rr"/><uId id="{uid}"/>'
            f"<MeSH><major>Whatever/lung</major>{mesh}</MeSH>{parents}</eCitation>\n")


OPENI_REPORTS = {
    "1": ("CXR1", ["normal"], ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]),
    "10": ("CXR10", ["calcified granuloma", "Pulmonary Atelectasis"], ["CXR10_IM-0002-1001", "CXR10_IM-0002-2001"]),
    "11": ("CXR11", ["opacity", "infiltrate", "pleural effusion", "lung/hypoinflation"], ["CXR11_IM-0067-1001"]),
    "12": ("CXR12", ["Atelectases", "Thickening/pleural thickening", "cardiomegaly", "nodule", "lesion"], ["CXR12_IM-0090-1001"]),
}


def make_openi(root: Path, extracted: bool = False) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, (uid, automatic, images) in OPENI_REPORTS.items():
            data = openi_report(uid, automatic, images).encode()
            info = tarfile.TarInfo(f"ecgen-radiology/{name}.xml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            if extracted:
                write_text(root / "ecgen-radiology" / f"{name}.xml", data.decode())
    (root / "NLMCXR_reports.tgz").parent.mkdir(parents=True, exist_ok=True)
    (root / "NLMCXR_reports.tgz").write_bytes(buffer.getvalue())
    views = {"CXR1_1_IM-0001-3001": "PA", "CXR1_1_IM-0001-4001": "LATERAL", "CXR10_IM-0002-1001": "PA", "CXR10_IM-0002-2001": "LL",
             "CXR11_IM-0067-1001": "AP", "CXR12_IM-0090-1001": "PA"}
    write_text(root / "nlmcxr_dicom_metadata.csv.gz", "imageid,Accession Number,Photometric Interpretation,View Position,filename\n"
               + "".join(f"{k},1,MONOCHROME1,{v},{k}.dcm\n" for k, v in views.items()), gz=True)
    write_text(root / "nlmcxr_tsne_pa.csv.gz", "imageid,tsne-view\n" + "".join(f"{k},{'PA' if v in ('PA', 'AP') else 'L'}\n" for k, v in views.items()), gz=True)
    for i, image in enumerate(views):
        write_png(root / "NLMCXR_png" / f"{image}.png", image_array(70 + i))
    return root


COVID_HEADER = ("patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,intubation_present,went_icu,in_icu,"
                "needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,neutrophil_count,lymphocyte_count,"
                "view,modality,date,location,folder,filename,doi,url,license,clinical_notes,other_notes,")
COVID_ROWS = [  # patient, finding, view, modality, folder, filename
    ("2", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "images", "auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg"),
    ("2", "Pneumonia/Viral/COVID-19", "AP Supine", "X-ray", "images", "auntminnie-b-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg"),
    ("4", "Pneumonia/Bacterial/Streptococcus", "AP", "X-ray", "images", "streptococcus-pneumoniae.png"),
    ("5", "No Finding", "PA", "X-ray", "images", "normal-1.jpg"),
    ("6", "todo", "PA", "X-ray", "images", "todo-1.jpg"),
    ("7", "Unknown", "AP", "X-ray", "images", "unknown-1.jpg"),
    ("8", "Tuberculosis", "PA", "X-ray", "images", "tb-1.png"),
    ("9", "Pneumonia/Viral/COVID-19", "Axial", "CT", "images", "ct-slice-1.png"),
]


def make_covid19(root: Path) -> Path:
    lines = [COVID_HEADER]
    for i, (patient, finding, view, modality, folder, filename) in enumerate(COVID_ROWS):
        lines.append(f"{patient},{i},M,60,{finding},Y,,,,,,,,,,,,,{view},{modality},2020,\"Hanoi, Vietnam\",{folder},{filename},"
                     f"10.1/x,https://x,CC BY,\"note, with comma\",,")
        path = root / folder / filename
        (write_png if filename.endswith(".png") else write_jpeg)(path, image_array(80 + i), **({} if filename.endswith(".png") else {"rgb": True}))
    write_text(root / "metadata.csv", "\n".join(lines) + "\n")
    return root


def make_nlmtb(root: Path) -> Path:
    files = {"MontgomerySet": ["MCUCXR_0001_0.png", "MCUCXR_0002_1.png", "MCUCXR_0003_0.png"],
             "ChinaSet_AllFiles": ["CHNCXR_0001_0.png", "CHNCXR_0330_1.png"]}
    for i, (folder, names) in enumerate(files.items()):
        for j, name in enumerate(names):
            write_png(root / folder / "CXR_png" / name, image_array(90 + 10 * i + j))
            write_text(root / folder / "ClinicalReadings" / name.replace(".png", ".txt"), "Patient's Sex: M\nPatient's Age: 050Y\n")
        write_text(root / folder / "CXR_png" / "Thumbs.db", "not an image")
    return root


@pytest.fixture
def xray() -> SimpleNamespace:
    """The fixture builders (functions of a target folder)."""
    return SimpleNamespace(
        image_array=image_array, write_png=write_png, write_jpeg=write_jpeg, write_dicom=write_dicom, write_text=write_text,
        nih=make_nih, chexpert=make_chexpert, mimic=make_mimic, padchest=make_padchest, rsna=make_rsna, siim=make_siim,
        vindr=make_vindr, openi=make_openi, covid19=make_covid19, nlmtb=make_nlmtb,
        NIH_ROWS=NIH_ROWS, RSNA_PATIENTS=RSNA_PATIENTS, SIIM_IMAGES=SIIM_IMAGES,
    )


@pytest.fixture
def txv(monkeypatch):
    """TorchXRayVision as a test oracle, with downloads made impossible while a test uses it.

    Every TXV class gets explicit metadata paths in these tests; the socket guard turns any
    attempt to fetch a default file into a failure instead of a silent download.
    """
    import socket

    xrv = pytest.importorskip("torchxrayvision")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted during a TorchXRayVision comparison: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return xrv
