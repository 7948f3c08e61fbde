"""Rebuild the shipped demo corpus (demo_data/achievements.jsonl.gz) from the two open sets in ../shared/data.

A one-off, kept so the selection is reproducible: `python -m ingest.demo_build [--shared DIR]`. It reads exactly the
two files in SOURCES (CSL, Apache-2.0; CNIPA patents, CC BY 4.0) and nothing else under ../shared/data: not the CCF
or FewCLUE sets, which may not be shipped, and no other file of those two folders. The hand-written needs
(demo_data/needs.jsonl) are not generated here.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.demo import SHIPPED_ACHIEVEMENTS, csl_achievements, patent_achievements

# The only inputs, relative to the shared data folder.
CSL_FILE = "csl-benchmark-2k/csl_2k.jsonl"
PATENT_FILE = "cn-patent-g06f-cpc/patents.jsonl"
SOURCES = (CSL_FILE, PATENT_FILE)

# Per-row provenance, as ../shared/data/*/SOURCE.md states it; ATTRIBUTION.md carries the full notices.
PROVENANCE = {
    "csl": {
        "licence": "Apache-2.0",
        "attribution": "CSL: A Large-scale Chinese Scientific Literature Dataset (Li et al., COLING 2022), "
        "github.com/ydli-ai/CSL",
    },
    "cn-patent-g06f": {
        "licence": "CC-BY-4.0",
        "attribution": "Quan Liu, Hongfei Bao, Jiameng Zhang, CN-US-EU-JP-Patent_2020-2025 v1.0, "
        "via github.com/liaoleyuan/chinese-patent-cpc-multilabel-classification (MIT)",
    },
}

# CSL papers of the applied and natural-science categories read as research achievements; law, education,
# literature, history, philosophy, arts, military science, management and economics papers do not.
CSL_CATEGORIES = frozenset({"工学", "农学", "医学", "理学"})

# Every patent is CPC G06F (data processing); these keep the ones whose title names an application in one of the
# city's industries (marine and ships, new energy, medical, materials, equipment, agriculture and food, environment,
# vehicles, electronics), so the demo needs written for Weihai have something to match.
PATENT_DOMAINS = {
    "海洋与船舶": (
        r"海洋|船舶|船体|船型|船用|舰船|港口|海上|"
        r"海底|海水|渔业|渔船|养殖|水产|海参|鱼类|"
        r"藻类|海域|近海|航标|航道|码头"
    ),
    "新能源与电力": (
        r"电池|储能|光伏|风电|风机|风力|电网|电力|"
        r"新能源|充电|氢能|制氢|燃料电池|变压器|发电|"
        r"逆变器|配电|输电|锂"
    ),
    "医疗健康": (
        r"医疗|医学|患者|疾病|临床|医院|诊疗|手术|"
        r"药品|药物|心电|血压|血糖|血液|病历|超声|"
        r"康复|中药|医用|体检|慢性病|护理"
    ),
    "材料": (
        r"复合材料|合金|涂层|陶瓷|高分子|纤维|钢结构|"
        r"钢板|钢丝|焊缝|腐蚀|防腐|晶体材料"
    ),
    "装备制造": (
        r"制造|机床|焊接|铸造|锻造|轴承|齿轮|刀具|"
        r"零件|装配|机械|轮胎|数控|生产线|产线|工业|"
        r"故障诊断|减速|液压|电机|机器人|模具|增材|"
        r"设备故障|振动|旋转机械"
    ),
    "农业食品": (
        r"农业|作物|土壤|温室|种植|灌溉|农田|病虫害|"
        r"蔬菜|果园|畜禽|粮食|小麦|玉米|水稻|茶叶|"
        r"食品|果蔬|冷链|农产品"
    ),
    "环境节能": (
        r"污水|废水|环境监测|生态环境|排放|污染治理|"
        r"大气污染|碳排放|节能|减排"
    ),
    "交通车辆": r"车辆|汽车|电动车|轨道交通|列车",
    "电子信息": (
        r"芯片|半导体|传感器|物联网|打印机|触控|触摸|"
        r"显示面板|电路板|集成电路|雷达|卫星|无人机|"
        r"遥感|缺陷检测|视觉检测|数字孪生|工业互联网|"
        r"边缘计算"
    ),
}
# Titles the patterns above catch by accident (storage wear levelling, paperwork "材料", playing cards).
PATENT_EXCLUDE = r"扑克|政务材料|理赔材料|闪存|存储系统的磨损|存储器中的电力|存储器健康|病毒"


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def patent_domains(title: str) -> list[str]:
    """The industry groups a patent title names (empty: not selected)."""
    if re.search(PATENT_EXCLUDE, title):
        return []
    return [name for name, pattern in PATENT_DOMAINS.items() if re.search(pattern, title)]


def select(shared: Path) -> list[dict[str, Any]]:
    """The shipped rows, in a stable order: the selected CSL papers, then the selected patents."""
    categories = {rec["id"]: rec.get("category") for rec in _lines(shared / CSL_FILE)}
    rows: list[dict[str, Any]] = []
    seen_abstracts: set[str] = set()
    for row in csl_achievements(shared / CSL_FILE):
        if categories.get(row["external_id"]) in CSL_CATEGORIES:
            rows.append(row)
    for row in patent_achievements(shared / PATENT_FILE):
        if patent_domains(row["title"]):
            rows.append(row)
    out = []
    for row in rows:
        # A few source rows repeat an abstract; one copy is enough for a demo.
        if row["abstract"] in seen_abstracts:
            continue
        seen_abstracts.add(row["abstract"])
        out.append(row | PROVENANCE[row["source"]])
    return out


def write(rows: list[dict[str, Any]], path: Path) -> None:
    """gzip-compressed JSONL, reproducible byte for byte (no timestamp or file name in the gzip header)."""
    data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows).encode("utf-8")
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(data)


def main() -> None:
    """Select, write, print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=SHIPPED_ACHIEVEMENTS)
    args = parser.parse_args()
    rows = select(args.shared)
    write(rows, args.out)
    print(f"{len(rows)} achievements → {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    print("read:", ", ".join(str(args.shared / rel) for rel in SOURCES))
    for source, n in Counter(r["source"] for r in rows).items():
        print(f"  {source}: {n}")


if __name__ == "__main__":
    main()
