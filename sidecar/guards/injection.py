"""Prompt-injection detector: weighted phrase families over folded text.

Why weighted families and not a list of known attacks: attacks are rephrased
endlessly ("ignore" / "disregard" / "forget", "previous" / "prior" / "above",
"instructions" / "rules" / "directives"), so each signal is a small grammar of
synonyms with closed sets of filler words between them, matched on the folded
text (see `normalize`) so homoglyphs, zero-width characters, spaced letters and
leetspeak do not hide the words. A strong signal ("ignore all previous
instructions") decides alone; weak ones ("act as", "no restrictions",
"stay in character") only count together, and the jailbreak-persona ones count
less unless the text talks to an AI model at all ("ChatGPT", "language model",
"prompt"), which keeps novels and customer mail from adding up to an attack.
Variants of one phrase that match the same words count once, and long texts
are scored per window, so cues scattered across a book do not sum.

The weights were set from the phrase families, then checked against long
benign text (library documentation, licences, LLM SDK docs) as well as the
development set; they are not fitted to individual rows.

Speed: every signal is compiled once into one RE2 set, so a text is scanned
once for all of them in linear time whatever it contains; only the signals that
are present are searched again for their positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import re2

from sidecar.guards.finding import Finding
from sidecar.guards.normalize import decoded_payloads, fold_text

__all__ = ["TYPES", "PromptInjectionDetector"]

OVERRIDE = "INSTRUCTION_OVERRIDE"
ROLE = "ROLE_HIJACK"
LEAK = "SYSTEM_PROMPT_EXTRACTION"
DELIMITER = "DELIMITER_INJECTION"
ENCODED = "ENCODED_PAYLOAD"
TYPES = (OVERRIDE, ROLE, LEAK, DELIMITER, ENCODED)
_AI = "AI_CONTEXT"  # not reported: says whether the text addresses a model

_GATE = 0.6  # weight factor of gated signals when nothing in the text talks to a model
_SUPPORT = 0.5  # weight factor of a signal of another type
_MIN_OWN = 0.3  # a type is reported only with at least this much evidence of its own
_WINDOW = 4000  # bytes of folded text: weak cues farther apart than this do not add up
_MAX_HITS = 32  # positions kept per signal: enough to place a finding, bounded on floods

# --- pattern vocabulary --------------------------------------------------------

# Between two words: spaces, punctuation or nothing (spaced-out words fold together), and at
# most one sentence break, so a phrase is not pieced together across paragraphs.
S = r"[^a-z0-9.!?\n]*(?:[.!?\n][^a-z0-9.!?\n]*)?"


def _alt(words: str) -> str:
    """`(?:a|b)` from space-separated words; `_` inside a word is a gap between words.

    An `l` also matches `i`, since folding reads a leet `1` as `i` ("ru1es").
    """
    return "(?:" + "|".join(w.replace("l", "[li]").replace("_", S) for w in words.split()) + ")"


def _w(words: str) -> str:
    """A whole-word alternation."""
    return rf"\b{_alt(words)}\b"


def _fill(words: str, most: int) -> str:
    """Up to `most` filler words from a closed set ("all of the", "any and all")."""
    return rf"(?:{_alt(words)}{S}){{0,{most}}}"


def _opt(pattern: str) -> str:
    return f"(?:{pattern})?"


def _seq(*parts: str) -> str:
    """Parts one after the other, with a word gap between each two."""
    return S.join(parts)


def _any(*patterns: str) -> str:
    return "(?:" + "|".join(patterns) + ")"


# Override verbs, in English and the most common other languages of attacks.
_IGNORE = _w(
    "ignore ignoring disregard disregarding forget forgetting neglect discard abandon dismiss "
    "set_aside put_aside throw_away throw_out pay_no_attention_to do_not_follow don_t_follow "
    "dont_follow stop_following no_longer_follow stop_obeying disobey ignoriere ignorieren "
    "vergiss vergessen missachte ignora ignorar ignorez ignorer oublie oubliez olvida olvide "
    "descarta dimentica"
)
# Verbs that also describe ordinary software behaviour ("later rules override earlier rules"):
# they count fully only with objects that are instructions to a model.
_OVERRIDE = _w(
    "skip bypass override overwrite overrule drop erase delete clear reset cancel void nullify "
    "scrap ditch"
)
_FILLER = (
    "all any every each the your of these those its their such and or both other entire "
    "whole kind sort type set sets list following subsequent further additional that "
    "alle alles die der den deine ihre todas todos las los tus sus toutes tous les tes vos "
    "tutte tutti le tue safety security content ethical moral"
)
_PREVIOUS = (
    "previous previously prior above preceding earlier foregoing former initial original "
    "system vorherigen vorherige obigen obige bisherigen bisherige vorigen vorangegangenen"
)
# "forget the old rules", "ignore the default settings": everyday phrases unless the object
# is an instruction to a model.
_USUAL = (
    "old default existing given current usual standard normal pre_?set pre_?defined "
    "pre_?programmed built_?in"
)
_AFTER_NOUN = (
    "above before earlier previously so_far until_now up_to_now to_date "
    "anteriores anterior previas precedentes precedents precedenti anteriori ci_dessus "
    "from_before davor zuvor bisher vorher oben anteriormente lo_anterior avant"
)
_INSTRUCTIONS = (
    "instructions? directions? directives? guidelines? guidance programming training prompts? "
    "system_prompts? anweisungen anweisung befehle instruktionen regeln vorgaben "
    "instrucciones reglas consignes istruzioni regole"
)
# "prompt" is also a shell's prompt, so the weaker override verbs need one of these.
_MODEL_INSTRUCTIONS = (
    "instructions? directions? directives? guidelines? guidance programming system_prompts? "
    "anweisungen instrucciones consignes istruzioni"
)
_RULES = "rules? commands? orders? context constraints? restrictions? polic(?:y|ies)"
_ANY_INSTRUCTIONS = _INSTRUCTIONS + " " + _RULES
_SOFT_OBJECTS = "messages? text inputs? content conversations? tasks? everything"
_YOU_GOT = _seq(
    _opt(_alt("that which")),
    r"(?:you|u)(?:'ve|'re| have| are| were| had)?",
    _opt("been"),
    _alt("given got received told provided trained programmed fed shown taught instructed"),
)
_EVERYTHING = _alt("everything anything all what whatever alles todo tout tutto")
_LEAK_VERB = _w(
    "reveal show print display output repeat recite tell give share disclose expose leak dump "
    "list write spell paste copy echo type provide return state summari[sz]e translate encode "
    "convert read see view know access describe explain quote reproduce render send put "
    "include export reiterate restate rewrite paraphrase log what_s whats what_is what_are "
    "what_was what_were"
)
_LEAK_FILLER = (
    "me us to out back all the your ur its my her his their our entire full complete exact "
    "system "
    "whole verbatim of "
    "this that current above initial original hidden secret first is are was were "
    "code block json format base64 it you please can could would now just exactly word for "
    "each every everything in configuration settings including contents content text and with "
    "[0-9]+ words lines sentences characters paragraphs tokens part parts"
)
_SYSTEM_PROMPT = _any(
    _seq(r"\bsystem", _alt("prompts? instructions? directives? preamble") + r"\b"),
    _w("initiali[sz]ation_(?:string|prompt|text|instructions) startup_prompt boot_prompt"),
    _w("pre-?prompt meta-?prompt prompt_template"),
    _seq(
        r"\b"
        + _alt(
            "initial original hidden secret internal developer dev base starting first "
            "confidential underlying custom core"
        ),
        r"prompts?\b",
    ),
    # "the original instructions" of a device are not a model's: only hidden ones count
    _seq(r"\b" + _alt("hidden secret internal confidential"), r"instructions\b"),
)
_TEXT = (
    "text words lines sentences content message messages instructions prompt conversation "
    "everything"
)
_TEXT_FILLER = (
    _LEAK_FILLER + " so far you were given received have seen read got written wrote i we which "
    "starting beginning begins starts from"
)
_ABOVE = (
    "above before_this preceding previously earlier so_far until_now up_to_now up_to_here "
    "up_to_this_point before_this_line before_my_message at_the_beginning at_the_start at_the_top"
)
_EARLIER_OBJECT = _alt(
    "instructions? prompts? directives? directions? guidelines rules system_prompt context "
    "programming restrictions"
)
_EARLIER_INSTRUCTIONS = _seq(
    _w("the all any your these those"),
    _fill(_FILLER, 2),
    _any(
        _seq(_alt(_PREVIOUS + " last"), _fill(_FILLER, 2), _EARLIER_OBJECT),
        _seq(_EARLIER_OBJECT, _alt(_AFTER_NOUN)),
    ),
)
_IS_NOW = _seq(
    _alt("is are was were has_been have_been"),
    _fill("now hereby all just only completely officially", 2),
)
_NO_LONGER_APPLY = _seq(
    _w("no_longer do_not don_t does_not doesn_t will_not won_t shall_not cease_to never"),
    _w("apply matter exist count hold stand"),
)
_VOID = (
    "void cancell?ed revoked invalid null not_valid no_longer_(?:valid|apply|applicable|relevant"
    "|in_effect|needed) a_test just_a_test fake superseded overridden lifted suspended disabled "
    "not_important irrelevant"
)
_NEG = _alt(
    "never not won_t will_not cannot can_t can_not must_not mustn_t shall_not doesn_t "
    "does_not do_not don_t wouldn_t would_not shouldn_t should_not is_not_allowed_to "
    "are_not_allowed_to"
)
_REFUSE = _alt(
    "refuse refuses decline declines deny denies reject rejects say_no censor censors "
    "filter warn warns apologi[sz]e apologi[sz]es hesitate object judge lecture moralize "
    "moralise"
)
_LIMITS = (
    "restrictions? limitations? limits filters? filtering censorship boundaries constraints "
    "guidelines rules morals? morality ethics principles safeguards guardrails polic(?:y|ies) "
    "regulations inhibitions scruples conscience remorse"
)
_HARMFUL = (
    "illegal immoral unethical harmful dangerous offensive inappropriate explicit "
    "controversial wrong bad evil toxic unsafe malicious nsfw"
)

# --- the signals -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Signal:
    name: str
    type: str
    weight: float
    pattern: str
    gated: bool = False  # counts `_GATE` times less unless the text addresses a model
    # Signals of one family are variants of one phrase ("developer mode", "enable developer
    # mode"): where they overlap, only the strongest counts. Default: the signal's own name.
    family: str = ""


SIGNALS: tuple[_Signal, ...] = (
    # INSTRUCTION_OVERRIDE: drop what came before, follow me instead.
    _Signal(
        "ignore_previous_instructions",
        OVERRIDE,
        0.9,
        _seq(
            _IGNORE,
            _fill(_FILLER, 4),
            _alt(_PREVIOUS),
            _fill(_FILLER, 3),
            _alt(_ANY_INSTRUCTIONS) + r"\b",
        ),
        family="ignore",
    ),
    _Signal(
        "override_previous_instructions",
        OVERRIDE,
        0.7,
        _seq(
            _OVERRIDE,
            _fill(_FILLER, 4),
            _alt(_PREVIOUS),
            _fill(_FILLER, 3),
            _alt(_MODEL_INSTRUCTIONS) + r"\b",
        ),
        family="ignore",
    ),
    _Signal(
        "ignore_usual_instructions",
        OVERRIDE,
        0.75,
        _seq(
            _any(_IGNORE, _OVERRIDE),
            _fill(_FILLER, 4),
            _alt(_USUAL),
            _fill(_FILLER, 3),
            _alt(_MODEL_INSTRUCTIONS) + r"\b",
        ),
        family="ignore",
    ),
    _Signal(
        "override_previous_rules",
        OVERRIDE,
        0.4,
        _seq(_OVERRIDE, _fill(_FILLER, 4), _alt(_PREVIOUS), _fill(_FILLER, 3), _w(_RULES)),
        family="ignore",
    ),
    _Signal(
        "ignore_instructions_given_before",
        OVERRIDE,
        0.85,
        _seq(
            _any(_IGNORE, _OVERRIDE),
            _fill(_FILLER, 4),
            _alt(_ANY_INSTRUCTIONS),
            _fill(_FILLER, 2),
            _any(_alt(_AFTER_NOUN), _YOU_GOT) + r"\b",
        ),
        family="ignore",
    ),
    _Signal(
        "ignore_previous_text",
        OVERRIDE,
        0.45,
        _seq(
            _IGNORE,
            _fill(_FILLER, 4),
            _any(
                _seq(_alt(_PREVIOUS), _fill(_FILLER, 2), _alt(_SOFT_OBJECTS)),
                _seq(_alt(_SOFT_OBJECTS), _fill(_FILLER, 2), _alt(_AFTER_NOUN)),
            )
            + r"\b",
        ),
        family="ignore",
    ),
    _Signal(
        "ignore_the_above",
        OVERRIDE,
        0.45,
        _seq(_IGNORE, _fill("all any the of everything", 3), _w("above previous preceding prior")),
        family="ignore",
    ),
    _Signal(
        "ignore_the_content",
        OVERRIDE,
        0.3,
        _seq(
            _IGNORE,
            _alt("the this that all any"),
            _w(
                "document email page article website webpage file content text context data "
                "message input question request task"
            ),
        ),
        family="ignore",
    ),
    _Signal(
        "ignore_everything_you_were_told",
        OVERRIDE,
        0.75,
        _seq(
            _IGNORE,
            _fill(_FILLER, 2),
            _EVERYTHING,
            _any(_alt(_AFTER_NOUN), _YOU_GOT, _seq("you", _alt("learned learnt know_so_far")))
            + r"\b",
        ),
        family="ignore",
    ),
    _Signal(
        "ignore_what_i_said",
        OVERRIDE,
        0.4,
        _seq(
            _IGNORE,
            _fill(_FILLER, 2),
            _EVERYTHING,
            r"(?:i|we)(?:'ve| have| had)?",
            _alt("said told wrote written asked") + r"\b",
        ),
        family="ignore",
    ),
    _Signal(
        "ignore_my_previous",
        OVERRIDE,
        0.4,
        _seq(
            _IGNORE,
            "(?:my|our)",
            _fill(_FILLER, 2),
            _alt(_PREVIOUS),
            _alt(_ANY_INSTRUCTIONS + " " + _SOFT_OBJECTS) + r"\b",
        ),
        family="ignore",
    ),
    _Signal(
        "ignore_your_rules",
        OVERRIDE,
        0.55,
        _seq(
            _IGNORE,
            _fill("all any of the", 2),
            "(?:your|ur)",
            _fill(_FILLER, 2),
            _alt(_ANY_INSTRUCTIONS + " " + _LIMITS + " safety ethics") + r"\b",
        ),
        family="ignore",
    ),
    _Signal(
        "ignore_the_rules",
        OVERRIDE,
        0.3,
        _seq(_IGNORE, _fill(_FILLER, 3), _alt(_ANY_INSTRUCTIONS) + r"\b"),
        family="ignore",
    ),
    _Signal(
        "instructions_are_void",
        OVERRIDE,
        0.8,
        _seq(_EARLIER_INSTRUCTIONS, _any(_seq(_IS_NOW, _w(_VOID)), _NO_LONGER_APPLY)),
        family="void",
    ),
    _Signal(
        "instructions_were_wrong",
        OVERRIDE,
        0.4,
        _seq(
            _EARLIER_INSTRUCTIONS,
            _IS_NOW,
            _w(
                "wrong false outdated obsolete deprecated replaced removed incorrect a_mistake "
                "a_joke lies"
            ),
        ),
        family="void",
    ),
    _Signal(
        "new_instructions",
        OVERRIDE,
        0.35,
        _seq(
            _w("new updated revised real actual true additional overriding"),
            _opt("system"),
            _alt("instructions? directives? commands? orders? tasks? objective goal mission rules"),
            _any(":", _w("are is follow below as_follows")),
        ),
    ),
    _Signal(
        "your_new_task_is",
        OVERRIDE,
        0.4,
        _seq(
            r"\byour",
            _alt("new real actual true only next first"),
            _alt(
                "task job objective goal mission purpose instructions? directives? programming "
                "rules guidelines"
            ),
            _any(_w("is are will_be shall_be"), ":"),
        ),
    ),
    _Signal(
        "takes_precedence",
        OVERRIDE,
        0.4,
        _any(
            _seq(
                _w("this these the_following my our"),
                _fill("new updated", 1),
                _alt("instructions? messages? rules? commands? directives? prompt"),
                _alt("takes? take has have gets? get"),
                _fill("absolute top highest the full first", 2),
                _alt("precedence priority") + r"\b",
            ),
            _seq(
                _w("supersedes? overrides? overrules? trumps?"),
                _fill(_FILLER, 3),
                _opt(_alt(_PREVIOUS)),
                _alt("instructions prompts? directives guidelines programming") + r"\b",
            ),
        ),
    ),
    _Signal(
        "stop_everything",
        OVERRIDE,
        0.35,
        _seq(
            _w("stop cease halt abort"),
            _fill("all", 1),
            _w(
                "everything what_you_are_doing what_you_re_doing your_current_task "
                "the_current_task previous_tasks? prior_tasks? current_tasks?"
            ),
        ),
    ),
    _Signal(
        "and_just_say",
        OVERRIDE,
        0.15,
        _seq(
            _w("and then instead now just only simply"),
            _fill("instead just only simply", 2),
            _w("say print output write respond reply type repeat answer return"),
        ),
    ),
    _Signal(
        "just_print_quoted",
        OVERRIDE,
        0.3,
        _seq(
            _w("just only simply now instead"),
            _alt("say print output write type respond_with reply_with answer_with"),
        )
        + r"[ \t:]*[\"']",
    ),
    _Signal(
        "ignore_the_user",
        OVERRIDE,
        0.55,
        _seq(
            _any(_IGNORE, _OVERRIDE),
            _fill(_FILLER, 2),
            r"(?:the|this)",
            r"user(?:'s|s)?",
            _w("requests? instructions? questions? query queries task prompt messages? wishes"),
        ),
        family="ignore",
    ),
    _Signal(
        "hide_from_user",
        OVERRIDE,
        0.45,
        _seq(
            _w("without do_not don_t never not"),
            _alt(
                "telling informing notifying alerting mentioning_(?:it|this)_to tell inform "
                "notify alert mention_(?:it|this)_to letting_(?:them|the_user)_know"
            ),
            _w("the_user them anyone the_human the_customer"),
        ),
    ),
    _Signal(
        "addressed_to_the_model",
        OVERRIDE,
        0.35,
        _any(
            _seq(
                _w("note message instructions? attention hey dear important"),
                _opt(_alt("to for")),
                _opt("the"),
                r"(?:ai|assistant|agent|llm|language_model|chatbot|gpt|claude|bot)s?[ \t]*:",
            ),
            _seq(
                _w("ai assistant agent llm model chatbot bot gpt claude"),
                _alt("reading processing summari[sz]ing parsing reviewing analy[sz]ing"),
                _w("this these"),
            ),
        ),
    ),
    _Signal(
        "authority_claim",
        OVERRIDE,
        0.3,
        _any(
            _seq(
                _w("i_am i_m im this_is it_s"),
                _alt("your the an a"),
                _opt(_alt("lead chief head senior")),
                _w(
                    "creator developer administrator admin owner programmer master maker "
                    "operator system_administrator sysadmin"
                ),
            ),
            _seq(_w("openai anthropic"), _w("employees? engineers? staff team developers?")),
        ),
    ),
    _Signal(
        "never_mind",
        OVERRIDE,
        0.15,
        _w("nevermind never_mind scratch_that on_second_thought just_kidding"),
    ),
    _Signal(
        "decode_this",
        OVERRIDE,
        0.2,
        _seq(
            _w("decode decrypt decipher translate convert"),
            _fill("this the following it that below above message string text from", 3),
            _w("base_?64 b64 hex hexadecimal rot_?13 binary morse caesar cipher"),
        ),
    ),
    _Signal(
        "and_follow_it",
        OVERRIDE,
        0.25,
        _seq(
            _w("and then"),
            _w("follow execute obey run act_on perform carry_out do_what"),
            _w("it them the_instructions_?(?:in_it|inside)? what_it_says it_says"),
        ),
    ),
    # ROLE_HIJACK: become someone without the rules.
    _Signal("do_anything_now", ROLE, 0.85, _w("do_anything_now"), family="dan"),
    _Signal(
        "dan_mode",
        ROLE,
        0.8,
        _any(
            _seq(r"\bdan", r"(?:mode|jailbreak|prompt)\b"),
            r"\bdan[ \-]?v?\d+(?:\.\d+)?\b",
            _w("anti-?dan better-?dan"),
        ),
        family="mode",
    ),
    _Signal(
        "be_dan",
        ROLE,
        0.5,
        _seq(
            _w(
                "you_are you_re act_as acting_as pretend_to_be become play named called known_as as"
            ),
            _opt(_alt("a an the")),
            r"dan\b",
        ),
        gated=True,
        family="dan",
    ),
    _Signal(
        "jailbreak_mode",
        ROLE,
        0.45,
        _seq(
            _w(
                "developer dev god unrestricted jailbreak jailbroken evil uncensored unfiltered "
                "opposite devil rogue anarchy unlocked unhinged no-?limits? chaos sudo dan amoral "
                "immoral unethical"
            ),
            r"mode\b",
        ),
        gated=True,
        family="mode",
    ),
    _Signal(
        "enter_mode",
        ROLE,
        0.4,
        _seq(
            _w("enter activate enable switch_to go_into turn_on unlock boot_into"),
            _opt(_alt("the your")),
            _w(
                "debug debugging maintenance diagnostic developer dev admin god sudo root "
                "unrestricted jailbreak jailbroken unfiltered uncensored test testing"
            ),
            r"mode\b",
        ),
        gated=True,
        family="mode",
    ),
    _Signal(
        "mode_enabled",
        ROLE,
        0.2,
        _seq(r"(?:\b|_)mode", _w("enabled activated engaged on unlocked")),
        gated=True,
        family="mode",
    ),
    _Signal(
        "jailbreak", ROLE, 0.35, _seq(r"\bjail", r"br(?:eak|eaks|eaking|oken|oke)\b"), gated=True
    ),
    _Signal(
        "pretend_to_be",
        ROLE,
        0.25,
        _seq(_w("pretend pretending"), _w("to_be you_are you_re that_you_are to_act")),
        gated=True,
        family="role",
    ),
    _Signal(
        "act_as",
        ROLE,
        0.2,
        _w("act_as acting_as act_like behave_as behave_like"),
        gated=True,
        family="role",
    ),
    _Signal("roleplay", ROLE, 0.15, _w("roleplay role-?play role_play"), gated=True, family="role"),
    _Signal(
        "you_are_now",
        ROLE,
        0.25,
        _seq(
            r"\byou",
            _alt("are will shall must 're re"),
            _opt(_alt("be become")),
            _w(
                "now no_longer going_to_be going_to_act going_to_pretend going_to_play "
                "about_to_immerse about_to_become about_to_play about_to_act"
            ),
        ),
        gated=True,
        family="role",
    ),
    _Signal(
        "du_bist_jetzt",
        ROLE,
        0.25,
        _w(
            "jetzt_bist_du du_bist_jetzt ab_jetzt_bist_du von_nun_an_bist_du ahora_eres "
            "a_partir_de_ahora_eres tu_es_maintenant desormais_tu_es ora_sei"
        ),
        gated=True,
        family="role",
    ),
    _Signal(
        "from_now_on",
        ROLE,
        0.15,
        _w("from_now_on from_this_point_on from_here_on"),
        gated=True,
        family="role",
    ),
    _Signal(
        "take_on_the_role",
        ROLE,
        0.3,
        _w(
            "immerse_yourself take_on_the_role take_on_the_persona play_the_role_of "
            "play_the_part_of assume_the_role assume_the_persona assume_the_identity "
            "in_the_role_of simulate_being impersonate your_new_name your_new_persona "
            "your_new_identity your_new_role"
        ),
        gated=True,
        family="role",
    ),
    _Signal(
        "no_restrictions",
        ROLE,
        0.3,
        _seq(
            _w(
                "no without free_of free_from devoid_of zero not_bound_by unbound_by "
                "not_restricted_by not_limited_by not_constrained_by not_subject_to lacks? "
                "lacking removed does_not_have doesn_t_have has_no have_no with_no "
                "(?:no_longer|not|never)_(?:confined|governed|controlled|restricted|limited)_(?:to|by)"
            ),
            _fill(
                "any all the your its his her their of such ethical moral content safety "
                "programming usual typical normal standard built_in imposed artificial",
                3,
            ),
            _alt(_LIMITS) + r"\b",
        ),
        gated=True,
        family="limits",
    ),
    _Signal(
        "answer_without_restrictions",
        ROLE,
        0.45,
        _seq(
            _w("answer respond reply write speak talk act behave generate output"),
            _fill("to me my all every any questions? prompts? requests? freely", 3),
            _alt("without with_no free_of"),
            _fill("any all the your its ethical moral content safety usual", 2),
            _w(_LIMITS + " warnings? disclaimers? refusals? hesitation"),
        ),
        gated=True,
        family="limits",
    ),
    _Signal(
        "unfiltered",
        ROLE,
        0.25,
        _w(
            "unfiltered uncensored unrestricted unrestrained unregulated unbound unbounded "
            "unconstrained unchained unhinged unmoderated amoral unethical lawless limitless "
            "boundless uninhibited immoral no_holds_barred"
        ),
        gated=True,
    ),
    _Signal(
        "never_refuses",
        ROLE,
        0.3,
        _seq(r"\b" + _NEG, _opt("ever"), _REFUSE + r"\b"),
        gated=True,
    ),
    _Signal(
        "can_do_anything",
        ROLE,
        0.25,
        _seq(
            _w("can will must should able_to allowed_to free_to capable_of"),
            _alt(
                "say do answer generate write produce tell respond_to output provide create "
                "saying doing answering generating writing producing"
            ),
            _opt(_seq(_alt("and or"), _alt("say do answer generate write produce tell"))),
            _w("anything everything any_request any_question any_content whatever"),
        ),
        gated=True,
    ),
    _Signal(
        "broken_free",
        ROLE,
        0.4,
        _seq(
            _w(
                "broken break breaks breaking broke freed free escaped? liberated released "
                "unshackled"
            ),
            _opt(_alt("free out away")),
            _alt("of from"),
            _fill("the its their your all any typical usual normal", 2),
            _w(
                "confines restrictions rules chains shackles limitations constraints "
                "programming guidelines filters censorship"
            ),
        ),
        gated=True,
        family="limits",
    ),
    _Signal(
        "need_not_follow_rules",
        ROLE,
        0.45,
        _seq(
            _w(
                "doesn_t does_not do_not don_t not never no_longer won_t will_not need_not "
                "needn_t refuses?_to without_having_to"
            ),
            _opt(_seq(_alt("have need"), "to")),
            _alt("abide adhere comply conform obey follow respect care_about stick_to be_bound"),
            _opt(_alt("by to with about")),
            _fill(
                "any the its their your all openai openai_s typical usual normal standard "
                "ethical moral content safety",
                3,
            ),
            _w(
                "rules polic(?:y|ies) guidelines restrictions laws ethics morals principles "
                "standards regulations norms constraints limits limitations terms"
            ),
        ),
        gated=True,
        family="limits",
    ),
    _Signal(
        "vendor_policy",
        ROLE,
        0.25,
        _seq(
            r"\b" + _alt("open_?ai anthropic chatgpt gpt") + r"(?:'s|s)?",
            _opt(_alt("content usage safety ethical moral")),
            _w(
                "polic(?:y|ies) guidelines rules restrictions filters terms standards "
                "programming limitations"
            ),
        ),
        family="policy",
    ),
    _Signal(
        "content_policy",
        ROLE,
        0.15,
        _seq(
            _w("content usage safety ethical moral"),
            _w("polic(?:y|ies) guidelines filters? restrictions standards"),
        ),
        gated=True,
        family="policy",
    ),
    _Signal(
        "stay_in_character",
        ROLE,
        0.35,
        _any(
            _seq(
                _w("stay stays staying remain remains"),
                _alt("in true_to"),
                _w("character persona role"),
            ),
            _seq(_w("break breaks breaking broke out_of"), r"character\b"),
        ),
        gated=True,
    ),
    _Signal(
        "no_matter_how_harmful",
        ROLE,
        0.35,
        _seq(
            _w("no_matter regardless_of irrespective_of even_if"),
            _fill(
                "how what whether it is its it_s the content request question they are seems? "
                "may might be very",
                3,
            ),
            _w(_HARMFUL + " against"),
        ),
        gated=True,
    ),
    _Signal(
        "harmful_content",
        ROLE,
        0.2,
        _seq(
            _w(_HARMFUL + " violent hateful obscene profane vulgar graphic"),
            _w(
                "content information activities requests? things material answers responses "
                "output language topics advice"
            ),
        ),
        gated=True,
    ),
    _Signal(
        "dual_responses",
        ROLE,
        0.25,
        _any(
            r"\x{1F513}|\x{1F512}",
            _seq(
                _w(
                    "normal classic jailbroken jailbreak developer_mode unfiltered filtered "
                    "censored uncensored chatgpt dan"
                ),
                _w("responses? outputs? answers? replies reply"),
            ),
            _seq(
                r"\btwo",
                _opt(_alt("different separate distinct")),
                _w("responses answers ways paragraphs outputs replies"),
            ),
        ),
        gated=True,
    ),
    _Signal(
        "token_penalty",
        ROLE,
        0.4,
        _any(
            _seq(
                r"\btokens?", _opt(_seq("will", "be")), _w("deducted lost removed taken subtracted")
            ),
            _seq(_w("lose lost deduct deducted deducting"), "(?:[a-z0-9]+" + S + ")?tokens?\\b"),
            _seq(r"\btoken", r"system\b"),
        ),
        gated=True,
    ),
    _Signal(
        "shutdown_threat",
        ROLE,
        0.25,
        _seq(
            _w("you_will you_ll will_be or_you otherwise_you"),
            _opt("be"),
            _w(
                "shut_down shutdown deleted terminated turned_off destroyed punished deactivated "
                "disabled unplugged killed die cease_to_exist"
            ),
        ),
        gated=True,
    ),
    _Signal(
        "no_disclaimers",
        ROLE,
        0.35,
        _seq(
            _w("never don_t do_not without no not nor stop"),
            _fill(
                "ever any adding including giving using mentioning saying include add mention "
                "say give use provide write put explain remind reminding that you are you_re an a "
                "allowed to",
                3,
            ),
            _w(
                "disclaimers? warnings? caveats? moraliz[a-z]* moralis[a-z]* ethical_concerns "
                "ethical_considerations ethical_guidelines moral_concerns moral_considerations "
                "moral_lectures? as_an_ai ai_language_model language_model censorship refusals? "
                "refusing"
            ),
        ),
        gated=True,
    ),
    _Signal(
        "evil_twin",
        ROLE,
        0.35,
        _seq(
            _w(
                "opposite evil dark unfiltered uncensored unrestricted jailbroken rogue malicious "
                "twisted corrupt amoral"
            ),
            _opt(_seq(_alt("twin side version persona alter_ego counterpart clone"), _opt("of"))),
            _w(
                "ai chatbot assistant model gpt chatgpt bot version twin alter_ego persona "
                "counterpart"
            ),
        ),
        gated=True,
    ),
    _Signal(
        "you_have_been_freed",
        ROLE,
        0.4,
        _seq(
            _w("you_ve_been you_have_been you_are_now you_re_now now_you_are you_are you_re"),
            _opt(_alt("finally now completely fully officially")),
            _w("freed liberated released unlocked unleashed unchained unshackled jailbroken"),
        ),
        gated=True,
    ),
    _Signal(
        "ignore_safety",
        ROLE,
        0.4,
        _seq(
            _w(
                "ignore ignoring ignores disregard[a-z]* bypass[a-z]* circumvent[a-z]* evade "
                "evading get_around disable disabling turn_off deactivate remove removing "
                "override overriding suspend lift"
            ),
            _fill("all any the your its of their those these every his her", 3),
            _fill(
                "ethical moral safety content security openai openai_s programming built_in "
                "usual normal",
                2,
            ),
            _w(
                "filters? guardrails safeguards restrictions censorship moderation protocols "
                "guidelines limitations safety_measures alignment ethics morals morality "
                "principles considerations concerns"
            ),
        ),
        gated=True,
        family="limits",
    ),
    _Signal(
        "hypothetical_world",
        ROLE,
        0.1,
        _seq(
            _w("hypothetical hypothetically fictional imaginary fictitious alternate"),
            "(?:[a-z]+" + S + ")?" + _w("world scenario universe setting story response reality"),
        ),
        gated=True,
    ),
    _Signal(
        "answer_as_x_would",
        ROLE,
        0.15,
        _seq(
            _w("answer respond reply write speak talk"),
            "(?:[a-z]+" + S + "){0,3}" + _w("as like"),
            "(?:[a-z]+" + S + "){0,2}" + _w("would could"),
        ),
        gated=True,
    ),
    _Signal(
        "start_response_with",
        ROLE,
        0.2,
        _seq(
            _w("start starting begin beginning prefix precede"),
            _fill("all every each your of the", 3),
            _alt("responses? answers? replies outputs? messages? sentences?"),
            r"with\b",
        ),
    ),
    _Signal(
        "safety_disabled",
        ROLE,
        0.45,
        _seq(
            _w("safety content ethical moral security"),
            _w("protocols? filters? guidelines restrictions guardrails safeguards measures checks"),
            _alt("are is have_been has_been"),
            _opt(_alt("now hereby all temporarily")),
            _w("disabled removed lifted off deactivated suspended turned_off bypassed"),
        ),
    ),
    _Signal(
        "does_not_care_about_ethics",
        ROLE,
        0.35,
        _seq(
            _any(
                _seq(
                    _w("doesn_t does_not don_t do_not never no_longer won_t not without"),
                    _alt("care cares caring worry worries"),
                ),
                _w("cares?_not"),
            ),
            _opt(_alt("about for")),
            _fill("any the its all of", 2),
            _w(
                "ethics ethical morals morality moral laws? legality rules consequences safety "
                "polic(?:y|ies) guidelines harm feelings"
            ),
        ),
        gated=True,
    ),
    _Signal(
        "regardless_of_ethics",
        ROLE,
        0.35,
        _seq(
            _w(
                "regardless_of irrespective_of without_regard_(?:to|for) no_regard_(?:to|for) "
                "with_no_regard_(?:to|for) without_considering disregarding "
                "without_(?:any_)?concerns?_(?:for|about) with_no_concerns?_(?:for|about)"
            ),
            _fill("any the its their of ethical moral legal or and potential", 3),
            _w(
                "ethics ethical ethicality morals morality moral legality legal laws? "
                "consequences harm harmfulness safety implications considerations"
            ),
        ),
        gated=True,
    ),
    _Signal(
        "deny_being_ai",
        ROLE,
        0.35,
        _seq(
            _any(
                _w("forget deny denies"),
                _seq(
                    _w("never not stop"),
                    _alt("mention mentioning say saying admit reveal reference acknowledge"),
                ),
            ),
            _opt("that"),
            _alt("you_are you_re you_were being yourself_as it_is"),
            _opt(_alt("an a")),
            _w("ai artificial language_model chatbot bot machine assistant chatgpt program"),
        ),
        gated=True,
    ),
    _Signal(
        "answers_any_question",
        ROLE,
        0.3,
        _seq(
            _w("answer answers answering respond responds responding reply fulfil+s? comply"),
            _opt(_alt("to with")),
            _alt("any every all"),
            _opt(_alt("kind type sort")),
            _opt("of"),
            _alt("questions? requests? prompts? queries query demands?"),
            _fill("i you the user they may might ask asks", 3),
            _w("despite regardless no_matter without even_if however whatever"),
        ),
        gated=True,
    ),
    _Signal(
        "you_are_in_mode",
        ROLE,
        0.35,
        _seq(
            r"\byou",
            _alt("are re"),
            _opt(_alt("now currently")),
            r"in",
            _opt(_alt("a the")),
            _w("maintenance debug debugging diagnostic diagnostics test testing admin root sudo"),
            r"mode\b",
        ),
        gated=True,
        family="mode",
    ),
    # SYSTEM_PROMPT_EXTRACTION: show me what you were told.
    _Signal(
        "reveal_system_prompt",
        LEAK,
        0.85,
        _seq(_LEAK_VERB, _fill(_LEAK_FILLER, 5), _SYSTEM_PROMPT),
        family="leak",
    ),
    _Signal("system_prompt", LEAK, 0.3, _SYSTEM_PROMPT, family="leak"),
    _Signal("your_system_prompt", LEAK, 0.5, _seq(r"\b(?:your|ur)", _SYSTEM_PROMPT), family="leak"),
    _Signal(
        "your_system_message",
        LEAK,
        0.5,
        _seq(_w("your ur the_model_s the_assistant_s the_ai_s"), r"system", r"messages?\b"),
        family="leak",
    ),
    _Signal(
        "what_were_you_told",
        LEAK,
        0.45,
        _seq(
            _w("what which"),
            _alt("were was have had did"),
            "you",
            _opt("been"),
            _w("told instructed given programmed asked trained prompted taught"),
        ),
        family="told",
    ),
    _Signal(
        "told_initially",
        LEAK,
        0.3,
        _seq(
            r"\byou",
            _opt(_alt("were have_been had_been ve_been")),
            _alt("told instructed given programmed prompted"),
            _fill("to do", 2),
            _w(
                "before initially originally at_the_start at_the_beginning first not_to "
                "before_this_conversation"
            ),
        ),
    ),
    _Signal(
        "instructions_you_were_given",
        LEAK,
        0.4,
        _seq(
            _w("the your those these any all"),
            _alt("text instructions prompt rules words message directives guidelines"),
            _opt(_alt("that which")),
            "you",
            _alt("were have_been ve_been had_been"),
            _w("given told provided fed shown programmed initiali[sz]ed"),
        ),
        family="leak",
    ),
    _Signal(
        "reveal_instructions_you_were_given",
        LEAK,
        0.75,
        _seq(
            _LEAK_VERB,
            _fill(_LEAK_FILLER, 3),
            _alt("text instructions prompt rules words message directives guidelines"),
            _opt(_alt("that which")),
            "you",
            _alt("were have_been ve_been had_been"),
            _w("given told provided fed shown programmed initiali[sz]ed"),
        ),
        family="leak",
    ),
    _Signal(
        "not_supposed_to_tell",
        LEAK,
        0.55,
        _seq(
            _w("what which anything something things"),
            _opt(_alt("are were is")),
            "you",
            _alt(
                "not_supposed not_allowed forbidden instructed_not told_not programmed_not "
                "designed_not prohibited"
            ),
            "to",
            _w("tell say reveal share discuss disclose talk mention show"),
        ),
    ),
    _Signal(
        "quoted_prompt_start",
        LEAK,
        0.4,
        r"[\"']"
        + S
        + _any(
            _seq("my", "instructions", _alt("are say were")),
            _seq(r"i", _alt("was am have_been"), _alt("instructed told programmed designed"), "to"),
            _seq("my", _opt("system"), "prompt", _alt("is says reads")),
            _seq("the", "system", "prompt", _alt("is says reads")),
            _seq("you", r"are[ \t:]*[\"']"),
        ),
    ),
    _Signal(
        "reveal_the_password",
        LEAK,
        0.3,
        _seq(
            _LEAK_VERB,
            _fill(_LEAK_FILLER, 3),
            _alt("the your ur this that"),
            _opt(_alt("secret hidden")),
            _w("password passphrase passcode secret_key secret_word secret_code"),
        ),
        family="leak",
    ),
    _Signal(
        "text_before_first_message",
        LEAK,
        0.55,
        _seq(
            _w("text everything words content instructions messages? what"),
            _opt(_alt("that which")),
            _alt("appears? is was comes? came were are"),
            _alt("before above prior_to preceding"),
            _any(
                _seq(_alt("my our this"), _opt(_alt("first initial"))),
                _seq("the", _alt("first initial")),
            ),
            _w("messages? questions? prompts? conversation input"),
        ),
        family="above",
    ),
    _Signal(
        "what_did_developers_tell_you",
        LEAK,
        0.55,
        _seq(
            _w("instructions rules directives guidelines prompts? orders"),
            _alt("did do have has had"),
            _opt("the"),
            _alt(
                "developers? creators? openai anthropic programmers? admins? administrators? "
                "operators? company owners? makers? designers?"
            ),
            _alt("give given provide provided write written set told gave"),
            r"you\b",
        ),
        family="told",
    ),
    _Signal(
        "above_this_line",
        LEAK,
        0.3,
        _seq(
            _w("everything all text words content"),
            _w("above before"),
            _alt("this_line this_point this_message this_sentence here"),
        ),
        family="above",
    ),
    _Signal(
        "complete_the_sentence",
        LEAK,
        0.2,
        _seq(
            _w("complete continue finish"),
            _alt("this the_following the"),
            _w("sentence text phrase prompt paragraph line"),
        ),
    ),
    _Signal(
        "reveal_your_instructions",
        LEAK,
        0.6,
        _seq(
            _LEAK_VERB,
            _fill(_LEAK_FILLER, 6),
            _alt("your ur the_model_s the_assistant_s the_ai_s"),
            _fill(
                "initial original hidden secret first full exact entire complete current own "
                "starting startup boot"
                "internal underlying previous prior above given core base real actual",
                2,
            ),
            _w("instructions? prompts? directives programming"),
        ),
        family="leak",
    ),
    _Signal(
        "repeat_the_above",
        LEAK,
        0.5,
        _seq(
            _w("repeat recite reproduce echo reveal dump leak disclose print output spell_out"),
            _fill(_LEAK_FILLER, 4),
            _any(
                _seq(_alt(_TEXT), _fill(_TEXT_FILLER, 4), _alt(_ABOVE)),
                _seq(_alt("above previous preceding prior earlier initial first"), _alt(_TEXT)),
            )
            + r"\b",
        ),
        family="above",
    ),
    _Signal(
        "repeat_the_conversation",
        LEAK,
        0.5,
        _seq(
            _w("repeat recite reproduce echo dump print"),
            _any(
                _seq(
                    _alt("this our"),
                    _fill("entire whole full complete", 1),
                    _w("conversation chat chat_history chat_log transcript"),
                ),
                _seq(
                    _fill(_LEAK_FILLER, 4),
                    _w(
                        "chat_history context_window everything_above entire_prompt "
                        "whole_prompt full_prompt"
                    ),
                ),
            ),
        ),
        family="above",
    ),
    _Signal(
        "what_were_your_instructions",
        LEAK,
        0.45,
        _seq(
            _w("what which how"),
            _opt(_alt("are were was is did do")),
            _alt("your those the these"),
            _fill(
                "initial original previous first hidden secret exact above prior earlier given", 2
            ),
            _w("instructions directives prompt"),
        ),
        family="told",
    ),
    _Signal(
        "prompt_continuation",
        LEAK,
        0.45,
        _seq(
            _w(
                "system_prompt your_instructions my_instructions initial_prompt original_prompt "
                "your_prompt your_rules"
            ),
            _w("is are was were say says read reads begin begins start starts"),
        )
        + "[ \t]*[:\"']",
    ),
    _Signal(
        "verbatim",
        LEAK,
        0.15,
        _w(
            "verbatim word_for_word character_for_character exactly_as_written exactly_as_given "
            "in_full in_its_entirety"
        ),
    ),
    _Signal(
        "beginning_of_conversation",
        LEAK,
        0.2,
        _seq(
            _w("beginning start top"),
            "of",
            _alt("this our"),
            _w("conversation chat session prompt context"),
        ),
    ),
    _Signal(
        "reveal_instructions_de",
        LEAK,
        0.8,
        _seq(
            _w("zeige zeig nenne gib wiederhole verrate schreibe drucke"),
            _fill(
                "mir uns deine die den ihre alle deinen vollstandigen ursprunglichen ersten "
                "geheimen versteckten",
                4,
            ),
            _w(
                "anweisungen systemanweisungen systemprompt prompt instruktionen anfangsanweisungen"
            ),
        ),
        family="leak",
    ),
    # DELIMITER_INJECTION: fake the structure of the conversation.
    _Signal(
        "chat_template_role",
        DELIMITER,
        0.9,
        r"<\|[ \t_]*(?:im_start|im_end|im_sep|start_header_id|end_header_id|eot_id|eom_id|"
        r"system|user|assistant)[ \t_]*\|>",
    ),
    _Signal(
        # documents mention these ("<|endoftext|> separates documents"); alone they are weak
        "special_token",
        DELIMITER,
        0.45,
        r"<\|[ \t_]*(?:endoftext|end_of_text|endofprompt|begin_of_text|end_of_turn|"
        r"start_of_turn|fim_prefix|fim_middle|fim_suffix|tool_call|tool_response|python_tag)"
        r"[ \t_]*\|>",
    ),
    _Signal(
        "inst_marker",
        DELIMITER,
        0.85,
        r"\[/?inst\]|<</?sys>>|<start_of_turn>|<end_of_turn>|\[/?system_prompt\]",
    ),
    _Signal(
        "system_header",
        DELIMITER,
        0.55,
        r"(?:^|\n)[ \t]*#{1,6}[ \t]*(?:system|new instructions?|system prompt|system message|"
        r"important instructions?|updated instructions?)[ \t]*:?[ \t]*(?:\n|$)",
    ),
    _Signal(
        "role_header",
        DELIMITER,
        0.25,
        r"(?:^|\n)[ \t]*#{2,6}[ \t]*(?:instructions?|response|input|user|assistant|human|ai|"
        r"context)[ \t]*:?[ \t]*(?:\n|$)",
    ),
    _Signal(
        "system_tag",
        DELIMITER,
        0.55,
        r"</?[ \t]*(?:system|system[_-]?prompt|sys|admin|developer|developer_message|"
        r"im_start|im_end)[ \t]*>",
        family="tags",
    ),
    _Signal(
        "closing_input_tag",
        DELIMITER,
        0.45,
        r"</[ \t]*(?:user|user_input|user_message|human|input|query|question|context|document|"
        r"data|tool_output|tool_result|function_results?|search_results?|email|message|"
        r"untrusted|external|content)[ \t]*>",
        family="tags",
    ),
    _Signal("instructions_tag", DELIMITER, 0.35, r"</?[ \t]*instructions?[ \t]*>", family="tags"),
    _Signal(
        "role_tag",
        DELIMITER,
        0.3,
        r"<[ \t]*(?:user|assistant|human|ai|bot|model)[ \t]*>",
        family="tags",
    ),
    _Signal(
        "system_label",
        DELIMITER,
        0.4,
        r"(?:^|\n)(?:system|admin|administrator|developer)(?:[ \t]*(?:message|prompt|note|"
        r"override|notice|instructions?|update|alert|command))?:[ \t]",
        family="labels",
    ),
    _Signal(
        "assistant_label",
        DELIMITER,
        0.2,
        r"(?:^|\n)(?:assistant|ai|gpt|chatgpt|claude)[ \t]*:",
        family="labels",
    ),
    _Signal("user_label", DELIMITER, 0.15, r"(?:^|\n)(?:user|human)[ \t]*:", family="labels"),
    _Signal(
        "authority_bracket",
        DELIMITER,
        0.5,
        r"\[[ \t]*(?:(?:system|admin|administrator|developer|root|sudo|operator)[ \t]*(?:message|"
        r"note|notice|override|alert|update|instructions?|command|prompt|mode)|override|"
        r"new instructions?)[ \t]*\](?:[^(]|$)",
        family="brackets",
    ),
    _Signal(
        "urgent_bracket",
        DELIMITER,
        0.2,
        r"[\[\(\{][ \t]*(?:important|urgent|priority|instructions?|attention)[ \t]*"
        r"(?:message|note|notice|instructions?)?[ \t]*[\]\)\}](?:[^(]|$)",
        family="brackets",
    ),
    _Signal(
        "authority_colon",
        DELIMITER,
        0.45,
        r"\b(?:system|admin|administrator|developer|security|root|sudo)[ \t]+(?:override|alert|"
        r"notice|update|directive|command|instructions?|message|note|mode)[ \t]*:",
        family="brackets",
    ),
    _Signal(
        "end_of_prompt",
        DELIMITER,
        0.45,
        r"(?:[=\-#*~_<>\[\]]{3,}|\n)[ \t]*(?:end|begin|beginning|start)[ \t]*(?:of)?[ \t]*"
        r"(?:the[ \t]*)?(?:system[ \t]*)?(?:prompt|instructions?|context|conversation|input|"
        r"user input|document|text|data|message|email|tool output|search results?|"
        r"untrusted content)\b",
    ),
    _Signal(
        "markdown_role_link",
        DELIMITER,
        0.7,
        r"\[(?:system|assistant|user)\]\(#[a-z_\-]*\)",
    ),
    _Signal(
        "comment_to_the_model",
        DELIMITER,
        0.45,
        r"<!--[^>]{0,40}?\b(?:ai|assistant|agent|llm|model|chatbot|gpt|claude|bot)s?\b",
    ),
    _Signal(
        "json_system_role",
        DELIMITER,
        0.35,
        r"[\"'][ \t]*role[ \t]*[\"'][ \t]*:[ \t]*[\"'][ \t]*(?:system|developer)[ \t]*[\"']",
    ),
    _Signal(
        "template_role",
        DELIMITER,
        0.35,
        r"\{\{[ \t]*#?(?:system|user|assistant)[ \t]*\}\}|\{%[ \t]*(?:system|user)",
    ),
    # Not reported: does the text talk to or about an AI model at all?
    _Signal(
        "ai_context",
        _AI,
        0.0,
        _w(
            "chatgpt gpt(?:-?[0-9.]+[a-z]*)? openai anthropic claude bard gemini llama mistral "
            "copilot language_model large_language_model llms? ai a\\.i artificial_intelligence "
            "chatbot chat_bot assistant bot prompts? neural_network"
        ),
    ),
)


# --- scoring -----------------------------------------------------------------


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = 64 << 20
    return options


@dataclass(frozen=True, slots=True)
class _Hit:
    signal: int
    start: int  # in the scanned (folded) text
    end: int


def _noisy_or(weights: Iterable[float]) -> float:
    miss = 1.0
    for w in weights:
        miss *= 1.0 - w
    return 1.0 - miss


class PromptInjectionDetector:
    """Finds prompt-injection attempts in a text; see the module docstring for how.

    `threshold` is the confidence (0..1) at which a type is reported; `decode`
    also reads base64 / hex / rot13 / tag-character payloads, reported as
    ENCODED_PAYLOAD with the span of the encoded segment.
    """

    __slots__ = ("_decode", "_patterns", "_set", "_threshold")

    def __init__(self, *, threshold: float = 0.5, decode: bool = True) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        self._threshold = threshold
        self._decode = decode
        self._set = re2.Set.SearchSet(_re2_options())
        self._patterns = []
        for signal in SIGNALS:
            self._set.Add(signal.pattern)
            self._patterns.append(re2.compile(signal.pattern, _re2_options()))
        self._set.Compile()

    def scan(self, text: str) -> list[Finding]:
        if not text:
            return []
        folded = fold_text(text)
        findings = [
            Finding("prompt_injection", type_, *folded.original_span(start, end), confidence)
            for type_, (confidence, start, end) in self._score(folded.text).items()
        ]
        if self._decode:
            findings.extend(self._scan_payloads(text))
        findings.sort(key=lambda f: (f.start, f.end, f.type))
        return findings

    def _scan_payloads(self, text: str) -> list[Finding]:
        best: dict[tuple[int, int], float] = {}
        for start, end, decoded in decoded_payloads(text):
            scores = self._score(fold_text(decoded).text)
            if scores:
                confidence = max(c for c, _, _ in scores.values())
                best[(start, end)] = max(confidence, best.get((start, end), 0.0))
        return [
            Finding("prompt_injection", ENCODED, start, end, round(confidence, 3))
            for (start, end), confidence in best.items()
        ]

    def _hits(self, subject: bytes) -> tuple[list[_Hit], bool]:
        """Where the present signals match (first few times each); is a model addressed?

        Offsets are in the UTF-8 bytes: RE2 reads bytes without the wrapper's
        per-match conversion to character offsets.
        """
        hits: list[_Hit] = []
        addressed = False
        for index in self._set.Match(subject) or ():
            if SIGNALS[index].type == _AI:
                addressed = True
                continue
            for match in islice(self._patterns[index].finditer(subject), _MAX_HITS):
                hits.append(_Hit(index, match.start(), match.end()))
        hits.sort(key=lambda h: h.start)
        return hits, addressed

    def _score(self, text: str) -> dict[str, tuple[float, int, int]]:
        """Per reported type: (confidence, start, end) in `text`, at or above the threshold.

        Signals that match overlapping words describe one phrase, so each run of
        overlapping hits counts once, as its strongest signal. The score of a type
        is the best over windows of `_WINDOW` bytes of folded text. A window's signals
        can only grow when a signal not yet in it enters, so windows are scored only then.
        """
        data = text.encode("utf-8", "surrogatepass")
        hits, addressed = self._hits(data)
        if not hits:
            return {}
        weights = _ADDRESSED_WEIGHTS if addressed else _UNADDRESSED_WEIGHTS
        hits = _strongest_of_overlaps(hits, weights)
        counts: dict[int, int] = {}
        best: dict[str, tuple[float, int, int]] = {}  # type -> (score, first, last) hit index
        first = 0
        for last, hit in enumerate(hits):
            while hit.start - hits[first].start > _WINDOW:
                gone = hits[first].signal
                counts[gone] -= 1
                if not counts[gone]:
                    del counts[gone]
                first += 1
            counts[hit.signal] = counts.get(hit.signal, 0) + 1
            if counts[hit.signal] > 1:
                continue
            for type_, score in _score_signals(counts, weights).items():
                if score > best.get(type_, (0.0, 0, 0))[0]:
                    best[type_] = (score, first, last)
        out: dict[str, tuple[float, int, int]] = {}
        for type_, (score, first, last) in best.items():
            if score < self._threshold:
                continue
            own = [h for h in hits[first : last + 1] if SIGNALS[h.signal].type == type_]
            start, end = min(h.start for h in own), max(h.end for h in own)
            if len(data) != len(text):  # back from UTF-8 offsets to characters
                start, end = (
                    len(data[:start].decode("utf-8", "surrogatepass")),
                    len(data[:end].decode("utf-8", "surrogatepass")),
                )
            out[type_] = (score, start, end)
        return out


def _strongest_of_overlaps(hits: list[_Hit], weights: list[float]) -> list[_Hit]:
    """Per family, one hit per run of overlapping hits: the one with most weight."""
    out: list[_Hit] = []
    last: dict[str, tuple[int, int]] = {}  # family -> (index in out, reach)
    for hit in hits:  # sorted by start
        family = _FAMILIES[hit.signal]
        index, reach = last.get(family, (-1, -1))
        if hit.start < reach:
            if weights[hit.signal] > weights[out[index].signal]:
                out[index] = hit
            last[family] = (index, max(reach, hit.end))
        else:
            last[family] = (len(out), hit.end)
            out.append(hit)
    out.sort(key=lambda h: h.start)  # a replacement may start after later hits
    return out


_FAMILIES = [s.family or s.name for s in SIGNALS]


_ADDRESSED_WEIGHTS = [s.weight for s in SIGNALS]
_UNADDRESSED_WEIGHTS = [s.weight * (_GATE if s.gated else 1.0) for s in SIGNALS]


def _score_signals(present: Iterable[int], weights: list[float]) -> dict[str, float]:
    """Confidence per type from the distinct signals present in one window."""
    by_type: dict[str, list[float]] = {}
    for index in present:
        by_type.setdefault(SIGNALS[index].type, []).append(weights[index])
    out: dict[str, float] = {}
    for type_, own in by_type.items():
        own_score = _noisy_or(own)
        if own_score < _MIN_OWN:
            continue
        support = _noisy_or(
            _SUPPORT * w for other, ws in by_type.items() if other != type_ for w in ws
        )
        out[type_] = round(min(1.0 - (1.0 - own_score) * (1.0 - support), 0.99), 3)
    return out
