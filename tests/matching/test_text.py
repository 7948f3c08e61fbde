"""Normalisation, query cleaning and segmentation."""

from __future__ import annotations

import threading

import jieba

from matching.text import Segmenter, char_bigrams, clean_query, default_segmenter, normalise, stop_words


def test_traditional_becomes_simplified():
    assert normalise("關於促進科技成果轉化") == "关于促进科技成果转化"


def test_full_width_becomes_half_width_but_chinese_punctuation_stays():
    assert normalise("ＧＢ／Ｔ　３１４８５－２０１５，（測試）") == "gb/t 31485-2015,(测试)"
    assert normalise("锂电池。“防爆”、《标准》") == "锂电池。“防爆”、《标准》"


def test_whitespace_collapsed_and_latin_lowercased():
    assert normalise("  PCR\t 检测\n\n技术 ") == "pcr 检测 技术"
    assert normalise(None) == ""


def test_clean_query_drops_boilerplate_and_keeps_the_technology():
    need = (
        "防爆锂离子电池的研发。随着社会的不断发展，锂电池的普及率越来越高，目前，国内锂离子电池产品存在安全隐患问题，"
        "为了满足客户及市场要求，结合本公司对锂电池防爆问题的研发经验积累，为了解决以上问题，特研发此项目。"
    )
    cleaned = clean_query(need)
    assert cleaned.startswith("防爆锂离子电池的研发")
    assert "安全隐患" in cleaned and "普及率" in cleaned
    for boilerplate in ("随着社会", "满足客户", "本公司", "特研发此项目"):
        assert boilerplate not in cleaned


def test_clean_query_cuts_the_company_self_description():
    need = (
        "高韧性立方氮化硼单晶的研制。需求内容：\n开发高韧性立方氮化硼新牌号。\n预期目标：\n抗冲击韧性≥67%。\n"
        "现有工作基础：\n公司现有标准化厂房3栋，2018年度实现销售收入2002万元。"
    )
    cleaned = clean_query(need)
    assert "立方氮化硼新牌号" in cleaned and "韧性≥67%" in cleaned
    assert "需求内容" not in cleaned and "预期目标" not in cleaned
    assert "厂房" not in cleaned and "销售收入" not in cleaned


def test_clean_query_never_empties_a_plain_query():
    assert clean_query("石墨烯") == "石墨烯"
    assert clean_query("") == ""


def test_user_dictionary_keeps_domain_terms_whole():
    # jieba's own dictionary splits these; the domain dictionary (CSL keywords) keeps them whole.
    assert jieba.lcut("平方和优化") == ["平方和", "优化"]
    plain = Segmenter(search_mode=False)
    assert plain.words("平方和优化") == ["平方和优化"]
    assert "催化动力学光度法" in plain.words("采用催化动力学光度法测定")


def test_without_user_dictionary_the_term_splits():
    assert Segmenter(user_dict=None, search_mode=False).words("平方和优化") == ["平方和", "优化"]


def test_search_mode_adds_dictionary_sub_words():
    assert default_segmenter().words("锂离子电池") == ["锂离子电池"]
    words = Segmenter(search_mode=True).words("锂离子电池")
    assert "锂离子电池" in words and "电池" in words


def test_stop_words_and_single_characters_are_dropped():
    words = default_segmenter().words("本公司需要研发一种新的防爆技术")
    assert "防爆" in words
    assert not {"公司", "需要", "研发", "一种", "技术", "的", "新"} & set(words)
    assert "的" in stop_words()


def test_latin_terms_survive_segmentation():
    words = default_segmenter().words("基于pcr的arms-pcr方法,5g通信")
    assert "pcr" in words and "arms" in words and "5g" in words


def test_char_bigrams_of_cjk_runs_and_latin_terms():
    assert char_bigrams("锂电池,钠") == ["锂电", "电池", "钠"]
    assert char_bigrams("pcr检测") == ["检测", "pcr"]


def test_segmenter_is_safe_to_share_between_threads():
    segmenter = Segmenter()
    text = "基于物联网和云计算的桥梁运营期健康监测体系"
    expected = Segmenter().words(text)
    results: list[list[str]] = []

    def work() -> None:
        for _ in range(20):
            results.append(segmenter.words(text))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(r == expected for r in results)
