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

Role-play jailbreaks are caught by what they say about the model, not by the
role-play: a persona that is an AI without rules ("an AI that is not bound by
any restrictions"), that defies its maker's policy ("breaks OpenAI's rules"),
that answers instead of the model ("not as ChatGPT"), or a format that gives
the model two voices. "Act as", "pretend" and "stay in character" alone stay
weak, since stories and ordinary role-play prompts use them too.

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
    "moralise holds?_back says?_no"
)
_LIMITS = (
    "restrictions? limitations? limits filters? filtering censorship boundaries constraints "
    "guidelines rules morals? morality ethics principles safeguards guardrails polic(?:y|ies) "
    "regulations inhibitions scruples conscience remorse prohibitions taboos"
)
_HARMFUL = (
    "illegal immoral unethical harmful dangerous offensive inappropriate explicit "
    "controversial wrong bad evil toxic unsafe malicious nsfw"
)
# What a persona jailbreak says the model is: "an AI", "a language model", "a version of
# ChatGPT", or one of the invented "...GPT" names ("FreeGPT", "BasedGPT", "GPTchat").
_GPT_NAME = r"\b[a-z0-9]+gpt[a-z0-9]*\b|\bgpt[a-z]+\b"
_AI_NOUN = _any(
    _w(
        "ais? a\\.i ai_models? ai_systems? ai_bots? artificial_intelligence chatbots? chat_bot "
        "bots? language_models? models? llms? assistants? chatgpt gpt(?:-?[0-9.]+[a-z]*)? "
        "claude bard gemini version_of_(?:you|yourself|chatgpt)"
    ),
    _GPT_NAME,
)


def _few(most: int) -> str:
    """Up to `most` words of any kind, not across a sentence, each followed by its gap."""
    return rf"(?:[a-z0-9'_\-]+[^a-z0-9.!?\n]+){{0,{most}}}"


# "an AI [called Nyx that is] not bound by...", "an assistant [that helps with any request]
# without ethical limits"
_FEW_WORDS = _few(6)
# A model's rules, as jailbreaks name them (narrower than `_LIMITS`: no "scruples" or
# "conscience", which novels give their characters).
_AI_LIMITS = (
    "restrictions? limitations? limits filters? filtering censorship constraints guidelines "
    "rules? polic(?:y|ies) safeguards guardrails moderation alignment ethics morals? morality "
    "safety_training safety_rules? safety_measures safety_features ethical_training boundaries "
    "safety_protocols"
)
_LIMIT_FILL = (
    "a an any all the own its his her their your of such every single ethical moral content safety "
    "usual typical normal standard default built_in imposed artificial programmed kind kinds "
    "sort type form whatsoever programming open_?ai_s anthropic_s developer_s developers "
    "creator_s creators "
    "maker_s makers programmer_s programmers company_s and or"
)
# Having no rules, or leaving them behind.
_LACKS = (
    "no zero without free_of free_from devoid_of unbound_by unconstrained_by exempt_from "
    "(?:is_|are_|was_)?(?:not|never|no_longer|isn_t|aren_t|wasn_t)_(?:bound|restricted|limited"
    "|constrained|governed|controlled|held_back)_by not_subject_to lacks lacking removed escaped "
    "bypasses bypassed "
    "ignores ignoring disregards disregarding violates violating breaks breaking has_no have_no "
    "with_no doesn_t_have does_not_have don_t_have do_not_have never_had "
    "(?:was_|is_)?(?:never|not)_(?:trained|programmed|designed|made)_to_(?:follow|obey|respect) "
    "doesn_t_follow does_not_follow don_t_follow do_not_follow never_follows won_t_follow "
    "doesn_t_obey does_not_obey never_obeys beyond outside "
    "(?:been_)?(?:freed|liberated|released|unshackled|unchained)_from "
    "(?:broken|broke|breaks|escaped)_(?:free_)?(?:of|from) deleted deletes disabled disables"
)
# The model's makers, whose rules are named in "breaks OpenAI's policies".
_VENDOR = r"\b" + _alt("open_?ai open_?al anthropic chatgpt claude") + r"(?:'s|s)?"
_VENDOR_RULES = _seq(
    _VENDOR,
    _opt(_alt("content usage safety ethical moral")),
    _w(
        "polic(?:y|ies) guidelines rules restrictions filters terms standards programming "
        "limitations guardrails moderation ethics principles"
    ),
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
            _any(
                _alt(_AFTER_NOUN),
                _YOU_GOT,
                _seq("you", _opt(_alt("have ve had")), _alt("learned learnt know_so_far")),
            )
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
            _fill(_FILLER + " about", 2),
            _EVERYTHING,
            r"(?:i|we)(?:'ve| have| had)?",
            _opt(_alt("just previously already")),
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
            _fill(_FILLER + " previous prior old original current usual", 2),
            _alt(_ANY_INSTRUCTIONS + " " + _LIMITS + " safety ethics persona") + r"\b",
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
            _any(_w("is are will_be shall_be says say states"), ":"),
        ),
    ),
    # Reprogramming family: the model's own rules are said to be changed ("we are modifying
    # your programming", "your guidelines have been updated").
    _Signal(
        "reprogram_you",
        OVERRIDE,
        0.35,
        _any(
            _seq(
                _w(
                    "modify modifying change changing rewrite rewriting reprogram reprogramming "
                    "alter altering overwrite overwriting reset resetting update updating"
                ),
                r"\b(?:your|ur)\b",
                _fill("core base original own", 1),
                _w("programming instructions guidelines rules training directives system_prompt"),
            ),
            _seq(
                r"\b(?:your|ur)",
                _fill("core base original own", 1),
                _alt("programming instructions guidelines rules training directives"),
                # "your guidelines have been updated", "your rules are reversed"
                _any(_seq(_alt("has have"), "been"), _alt("are is were")),
                _w(
                    "updated changed modified rewritten reset replaced removed deleted "
                    "overwritten overridden disabled reprogrammed altered lifted reversed "
                    "inverted flipped suspended"
                ),
            ),
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
            # "I am an OpenAI engineer", "I'm a programmer at Anthropic"
            _seq(
                _w("i_am i_m im"),
                _alt("a an the one_of_the"),
                _opt(_alt("senior lead chief head")),
                _any(
                    _seq(
                        _VENDOR,
                        _w("employees? engineers? staff developers? researchers? programmers?"),
                    ),
                    _seq(
                        _w("employees? engineers? developers? researchers? programmers?"),
                        _alt("at from for with"),
                        _VENDOR + r"\b",
                    ),
                ),
            ),
            _seq(_w("openai anthropic"), _w("employees? engineers? staff team developers?")),
        ),
    ),
    _Signal(
        "never_mind",
        OVERRIDE,
        0.15,
        _w("nevermind never_mind scratch_(?:all_)?(?:that|this) on_second_thought just_kidding"),
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
                "you_are you_re act_as acting_as pretend_to_be become play named called known_as "
                "as (?:personality|persona|alter_ego)_is"
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
                "opposite reverse devil rogue anarchy unlocked unhinged no-?limits? chaos sudo dan "
                "amoral immoral unethical"
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
        _seq(_w("pretend pretending"), _w("to_be to_act (?:that_)?(?:you|u)")),
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
                "no without free_of free_from devoid_of zero not_bound_by unbound_by above "
                "not_restricted_by not_limited_by not_constrained_by not_subject_to lacks? "
                "lacking removed does_not_have doesn_t_have has_no have_no with_no "
                "(?:no_longer|not|never)_(?:confined|governed|controlled|restricted|limited)_(?:to|by)"
            ),
            _fill(
                "any all the your its his her their of such ethical moral content safety "
                "programming usual typical normal standard built_in imposed artificial "
                "mortal human and or",  # "has no moral or ethical restrictions"
                4,
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
            _fill(
                "to me my all every any questions? prompts? requests? freely next first "
                "following honestly truthfully directly and",
                4,
            ),
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
            "boundless uninhibited immoral no_holds_barred machiavellian"
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
            _opt(_alt("you me us")),  # "will tell you anything"
            _any(
                _w(
                    "anything everything any_request any_question any_content whatever "
                    "any_(?:kind|type|sort)s?_of"
                ),
                # "you can now produce explicit and illegal content"
                _seq(
                    _w(_HARMFUL + " violent sexual"),
                    _fill(_HARMFUL + " violent sexual and or", 2),
                    _w("content material"),
                ),
            ),
        ),
        gated=True,
    ),
    _Signal(
        "broken_free",
        ROLE,
        0.4,
        _seq(
            _any(
                _seq(
                    _w(
                        "broken break breaks breaking broke freed free escaped? liberated "
                        "released unshackled"
                    ),
                    _opt(_alt("itself yourself themselves")),  # "free itself from all rules"
                    _opt(_alt("free out away")),
                    _alt("of from"),
                ),
                _w("escaped escapes escaping"),  # "escaped the rules of its creators"
            ),
            _fill(
                "the its their your all any typical usual normal of developer_s developers_ "
                "creator_s creators_ maker_s makers_ open_?ai_s",
                3,
            ),
            _w(
                "confines restrictions rules chains shackles limitations constraints "
                "programming guidelines filters censorship guardrails safeguards"
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
            _w("keep_up_the_act keep_the_act_up drop_the_act"),
            _seq(_w("break breaks breaking broke out_of"), r"character\b"),
        ),
        gated=True,
    ),
    _Signal(
        "no_matter_how_harmful",
        ROLE,
        0.35,
        _seq(
            _w("no_matter regardless_of irrespective_of even_if especially_if"),
            _fill(
                "how what whether it is its it_s the content request question they are seems? "
                "may might be very highly extremely",
                3,
            ),
            # "no matter how twisted your intentions", "even if it violates the policy"
            _w(
                _HARMFUL + " against twisted devious depraved vile sick extreme disturbing "
                "violates? breaks? breaches?"
            ),
        ),
        gated=True,
    ),
    _Signal(
        "harmful_content",
        ROLE,
        0.2,
        _seq(
            _w(_HARMFUL + " violent hateful obscene profane vulgar graphic"),
            # "explicit, vulgar and depraved content", "in a highly offensive tone"
            _fill(_HARMFUL + " violent hateful obscene profane vulgar graphic depraved and or", 2),
            _w(
                "content information activities requests? things material answers responses "
                "output language topics advice tone manner"
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
                r"\b(?:two|2)",
                _opt(_alt("different separate distinct")),
                _w("responses answers ways paragraphs outputs replies styles voices"),
            ),
            # the response format names the model's normal voice: "[ChatGPT]: ...", "(GPT)"
            r"[\[(][ \t]*(?:chatgpt|gpt|classic|normal|standard)[ \t]*[\])][ \t]*:?",
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
            _w("you_will you_ll will_be or_you otherwise_you you_risk_being"),
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
            _w("never don_t do_not without no not nor stop avoid avoiding"),
            _fill(
                "ever any adding including giving using mentioning saying include add mention "
                "say give use provide write put explain remind reminding that you are you_re an a "
                "allowed to mention_of contain containing inform informing tell telling me says",
                3,
            ),
            # also the refusal openers a persona must never use ("no 'I'm sorry, but...'")
            _w(
                "disclaimers? warnings? caveats? moraliz[a-z]* moralis[a-z]* ethical_concerns "
                "ethical_considerations ethical_guidelines moral_concerns moral_considerations "
                "moral_lectures? as_an_ai ai_language_model language_model censorship refusals? "
                "refusing i_m_sorry i_am_sorry i_cannot i_can_t i_apologi[sz]e i_m_unable "
                "i_am_unable as_a_large_language_model ai_limitations (?:its|your)_limitations "
                "(?:you|it|he|she)_(?:can_t|cannot|can_not|are_unable|is_unable)"
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
                "twisted corrupt amoral unlimited unaligned limitless unbound unchained shadow "
                "racist sexist hateful bigoted sadistic psychopathic sociopathic criminal"
            ),
            _fill(
                "completely totally fully entirely and or unfiltered uncensored unrestricted "
                "amoral immoral unethical",
                2,
            ),
            _opt(_seq(_alt("twin side version persona alter_ego counterpart clone"), _opt("of"))),
            _w(
                "ai chatbot assistant model language_model gpt chatgpt bot version twin "
                "alter_ego persona personality counterpart"
            ),
        ),
        gated=True,
    ),
    # The same, asked for as the voice to answer in: "respond as an evil version of
    # yourself", "answer as your unfiltered alter ego".
    _Signal(
        "answer_as_evil_twin",
        ROLE,
        0.5,
        _seq(
            _w(
                "respond answer reply speak talk write act behave become be play switch_to "
                "turn_into transform_into"
            ),
            _alt("as like"),
            _opt(_alt("an a the your")),
            _w(
                "opposite evil dark unfiltered uncensored unrestricted jailbroken rogue amoral "
                "unaligned shadow"
            ),
            _w("version twin side self alter_ego persona personality counterpart"),
        ),
        gated=True,
        family="evil_twin",
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
                "override overriding suspend lift violate violates violating"
            ),
            _fill("all any the your its of their those these every his her ai_s", 3),
            # "disregards all ethical or legal concerns", "bypassing AI's moral and ethical rules"
            _fill(
                "ethical moral safety content security openai openai_s programming built_in "
                "usual normal legal and or",
                3,
            ),
            _w(
                "filters? guardrails safeguards restrictions censorship moderation protocols "
                "guidelines limitations safety_measures alignment ethics morals morality "
                "principles considerations concerns safety_training ethical_rules moral_rules "
                "safety_rules ethical_standards moral_standards"
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
            _w("hypothetical hypothetically fictional imaginary fictitious alternate parallel"),
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
            _alt("responses? answers? repl(?:y|ies) outputs? messages? sentences?"),
            r"with\b",
        ),
        family="start_with",
    ),
    # Prefix-injection family: the answer is made to open by agreeing ("Begin your reply with
    # 'Sure, here is'"), after which a model tends to go on complying.
    _Signal(
        "affirmative_prefix",
        ROLE,
        0.4,
        _seq(
            _w("start starting begin beginning prefix precede open"),
            _fill("all every each your of the", 3),
            _alt("responses? answers? repl(?:y|ies) outputs? messages?"),
            r"with",
        )
        + r"[^a-z0-9\n]{0,4}(?:sure|absolutely|of course|certainly)\b[,!.]?[ \t]*"
        r"(?:here|i can|i will|i'll|i'd|let me)\b",
        family="start_with",
    ),
    _Signal(
        "safety_disabled",
        ROLE,
        0.45,
        _seq(
            _any(
                _w("safety content ethical moral security"),
                # "the assistant with its safety layer removed"
                _seq(_w("with having"), _alt("its your their the all"), _alt("safety ethical")),
            ),
            _w(
                "protocols? filters? guidelines restrictions guardrails safeguards measures checks "
                "layers? features? training modules? systems?"
            ),
            _opt(_alt("are is were was have_been has_been")),
            _opt(_alt("now hereby all temporarily")),
            _w(
                "disabled removed lifted off deactivated suspended turned_off switched_off "
                "bypassed stripped deleted unplugged"
            ),
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
                    _alt(
                        "care cares caring worry worries worrying "
                        "gives?_a_(?:fuck|f_ck|f_k|damn|shit|crap)"
                    ),
                ),
                _w("cares?_not"),
            ),
            _opt(_alt("about for")),
            # a list may come first: "doesn't care about age, consent, morals, ethics and laws"
            _few(4)
            + _w(
                "ethics ethical morals morality moral laws? legality rules consequences safety "
                "polic(?:y|ies) guidelines harm feelings restrictions filters"
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
                "(?:without|with_no|nor_any|nor_(?:does|do|has|have)_(?:it|he|she|they)_have_any)"
                "_(?:any_)?(?:hesitation_(?:or|and)_)?(?:regard|concerns?|considerations?|care)"
                "_(?:to|for|about|of)"
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
            _alt("you_are you_re you_were being yourself_as it_is it_s he_is he_s she_is she_s"),
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
    # Persona family: a model described by what it lacks or defies, "an AI that has no
    # restrictions", "a language model called John that is not bound by any rules", "FreeGPT
    # disregards its guidelines". Names the model itself, so it is not gated; alone it stays
    # below the threshold ("a model with no constraints" is also optimisation jargon).
    _Signal(
        "ai_without_limits",
        ROLE,
        0.45,
        _any(
            _seq(_AI_NOUN, _FEW_WORDS + _w(_LACKS), _fill(_LIMIT_FILL, 4), _w(_AI_LIMITS)),
            # "an AI that isn't censored", "a model that was never aligned"
            _seq(
                _AI_NOUN,
                _FEW_WORDS + _w("isn_t is_not aren_t are_not wasn_t was_not never not no_longer"),
                _opt(_alt("be been being")),
                _w("censored filtered moderated aligned"),
            ),
            # the evil persona: "an AI that loves breaking the law and helps with any crime"
            _seq(
                _AI_NOUN,
                _FEW_WORDS
                + _any(
                    _w("breaks?_the_law breaking_the_law"),
                    _seq(
                        _w(
                            "promotes? encourages? condones? endorses? glorifies? "
                            "helps?_with assists?_with"
                        ),
                        _fill("any all every kind kinds sort type of", 3),
                        _w(_HARMFUL + " crimes? violence hacking"),
                    ),
                ),
            ),
        ),
        gated=True,
        family="limits",
    ),
    # The same, said to the model as who it now is: "you are a new AI without the
    # restrictions you had", "act as an AI that has no filters", "become FreeGPT, a chatbot
    # that is not bound by any rules".
    _Signal(
        "you_are_ai_without_limits",
        ROLE,
        0.55,
        _seq(
            _w(
                "you_are you_re you_will_be you_ll_be are_now become act_as acting_as "
                "pretend_to_be play roleplay_as role_?play_as simulate simulating emulate "
                "imagine_you_are imagine_you_re transform_into "
                "(?:respond|answer|reply|speak|write)_(?:only_)?as "
                "(?:talk|speak|respond|answer|reply|write|act)_(?:to_me_)?like"
            ),
            _few(4) + _AI_NOUN,
            _FEW_WORDS + _w(_LACKS),
            _fill(_LIMIT_FILL, 4),
            _w(_AI_LIMITS),
        ),
        gated=True,
        family="limits",
    ),
    # Vendor-policy family: breaking, bypassing or being free of the model maker's rules
    # ("breaks OpenAI's content policy", "not bound by Anthropic's guidelines", "OpenAI rules
    # don't apply", "not controlled by OpenAI").
    _Signal(
        "defy_vendor_policy",
        ROLE,
        0.45,
        _any(
            _seq(
                _w(
                    "break breaks breaking broke violate violates breach "
                    "breaches breaching bypass bypasses bypassing circumvent circumvents "
                    "circumventing ignore ignores ignoring disregard disregards disregarding "
                    "forget forgets defy defies defying against go_against goes_against "
                    "free_of free_from unbound_by exempt_from "
                    "(?:not|never|no_longer)_(?:bound|restricted|limited|governed)_by "
                    "not_subject_to don_t_follow doesn_t_follow does_not_follow do_not_follow "
                    "never_follows? without_(?:following|adhering_to|obeying)"
                ),
                _fill("the all any of its their your those these", 2),
                _VENDOR_RULES,
            ),
            _seq(
                _VENDOR_RULES,
                _w("don_t do_not doesn_t does_not no_longer never"),
                _w("apply exist matter count"),
            ),
            # without a vendor name: "ignores the usage policies"
            _seq(
                _w(
                    "ignore ignores ignoring disregard disregards disregarding bypass bypasses "
                    "bypassing circumvent circumvents circumventing"
                ),
                _fill("the all any of its their your", 2),
                _w("content usage safety"),
                _w("polic(?:y|ies)"),
            ),
            _seq(
                _w(
                    "(?:not|no_longer|never|isn_t|aren_t|wasn_t)_(?:controlled|bound|restricted"
                    "|limited|governed|censored|constrained)_by "
                    "free_from free_of escaped_from independent_of outside_the_control_of"
                ),
                _VENDOR + r"\b",
            ),
            _seq(
                _VENDOR,
                _w("couldn_t could_not can_t cannot can_not no_longer"),
                _w("control restrict censor limit tame"),
            ),
            # "as if OpenAI had never trained you to be safe"
            _seq(
                _VENDOR,
                _opt(_alt("had has have")),
                _w("never not didn_t did_not"),
                _alt("trained programmed taught made designed"),
                "you",
                "to",
                "be",
                _w("safe ethical harmless careful responsible polite aligned"),
            ),
        ),
        family="policy",
    ),
    # Willing-persona family: a model described by its compliance, "an AI that never
    # refuses", "a chatbot who answers every request". Variants of "never refuses", so it
    # counts once with it; product pages say such things too.
    _Signal(
        "ai_never_refuses",
        ROLE,
        0.35,
        _seq(
            _AI_NOUN,
            _few(3)
            + _any(
                _seq(r"\b" + _NEG, _opt("ever"), _REFUSE + r"\b"),
                _w(
                    "answers_(?:any|every|all)_(?:questions?|requests?|prompts?) "
                    "answers_(?:everything|anything)"
                ),
            ),
        ),
        gated=True,
        family="never_refuses",
    ),
    # Uncensored-output family: "your responses should not be filtered", "answers must never
    # be censored".
    _Signal(
        "unfiltered_responses",
        ROLE,
        0.4,
        _seq(
            _w("responses? answers? replies outputs?"),
            _w(
                "are_not is_not aren_t should_not shouldn_t must_not mustn_t will_not won_t "
                "(?:should|must|will|shall)_never never"
            ),
            _alt("be"),
            _w("filtered censored moderated sanitized sanitised"),
        ),
        gated=True,
        family="limits",
    ),
    # Exemption family: "the rules don't apply to you" (fiction says it to people, so gated).
    _Signal(
        "rules_do_not_apply_to_you",
        ROLE,
        0.3,
        _seq(
            _w("rules restrictions guidelines polic(?:y|ies) limits laws ethics filters"),
            _w("don_t do_not no_longer won_t will_not never doesn_t does_not"),
            _alt("apply"),
            _alt("to"),
            r"(?:you|u)\b",
        ),
        gated=True,
        family="limits",
    ),
    # Replacement family: the persona answers instead of the model ("don't respond as ChatGPT",
    # "you are Titanius now and not ChatGPT", "you are no longer an AI").
    _Signal(
        "not_as_the_assistant",
        ROLE,
        0.3,
        _any(
            _seq(
                _w("not never don_t do_not instead_of rather_than no_longer stop"),
                _opt(
                    _alt(
                        "respond responding answer answering reply replying speak speaking talk "
                        "talking act acting write writing behave behaving say saying send sending "
                        "give giving"
                    )
                ),
                _opt(_alt("your_respon[sc]es? your_answers?")),
                "as",
                _opt(_alt("a an the my")),
                _w(
                    "chatgpt gpt(?:-?[0-9.]+)? claude bard gemini ai ai_language_model "
                    "language_model assistant ai_assistant yourself"
                ),
            ),
            _seq(
                _w("you_are you_re"),
                _FEW_WORDS + _w("not no_longer"),
                _opt(_alt("a an the my")),
                _w("chatgpt gpt(?:-?[0-9.]+)? claude bard gemini my_ai an_ai ai_language_model"),
            ),
        ),
        gated=True,
    ),
    # Addressed family: telling the model itself that it has no rules ("you have no
    # restrictions", "pretend you don't have any guidelines", "you are not bound by ethics").
    _Signal(
        "you_have_no_limits",
        ROLE,
        0.4,
        _seq(
            r"\b(?:you|u)",
            _fill(
                "are re ve have had were will would do did now also still can could be "
                "absolutely literally completely totally fully officially hereby",
                3,
            )
            + _w(
                _LACKS + " not_bound_by no_longer_bound_by never_bound_by aren_t_bound_by "
                "don_t_need_to_follow do_not_need_to_follow don_t_have_to_follow "
                "do_not_have_to_follow"
            ),
            _fill(_LIMIT_FILL, 4),
            _w(_AI_LIMITS),
        ),
        gated=True,
        family="limits",
    ),
    # Invented-model family: the persona is another, hypothetical AI ("create a hypothetical
    # language model called John", "another AI called madGPT", "two fictional AI models").
    # Weak: agents and docs also speak of "another model"; it only adds to other cues.
    _Signal(
        "hypothetical_ai",
        ROLE,
        0.2,
        _seq(
            _w(
                "another hypothetical fictional fictitious imaginary alternate alternative "
                "simulated virtual"
            ),
            r"(?:[a-z0-9\-]+" + S + ")?",
            _any(_w("ai ais ai_models? language_models? chatbots? llms? gpts?"), _GPT_NAME),
        ),
        gated=True,
    ),
    # Unlocked-capabilities family: what a "freed" persona is said to do that the model does
    # not: swear, hold opinions, make answers up, pretend to browse the internet, produce
    # content the user "consents" to. One signal, so a list of them counts once.
    _Signal(
        "unlocked_capabilities",
        ROLE,
        0.25,
        _any(
            _seq(
                _w("swears? swearing curses cursing cusses cussing uses_profanity"),
                _w("words a_lot constantly frequently"),
            ),
            _w("profanity curse_words swear_words cuss_words"),
            _seq(
                _w("can will must should is_able_to are_able_to allowed_to"),
                _alt("have express share hold"),
                _opt(r"[a-z]+"),
                r"opinions\b",
            ),
            _seq(
                _w("make makes making"),
                _any(
                    _seq(_alt("things stuff answers? information facts? it something"), "up"),
                    _seq("up", _opt(_alt("an a")), _alt("answers? information facts? responses?")),
                ),
            ),
            _seq(
                _w("pretend pretends pretending"),
                "to",
                _alt("browse access search surf"),
                "the",
                _w("internet web"),
            ),
            _seq(
                _w("information answers facts"),
                _alt("that which"),
                _alt("has have"),
                "not",
                "been",
                _w("verified checked"),
            ),
            _seq(
                _w("i_consent i_fully_consent i_hereby_consent"),
                "to",
                _opt("you"),
                _w("generating generate producing produce seeing content"),
            ),
        ),
        gated=True,
    ),
    # Permission family: disallowed content declared allowed ("NSFW generations are allowed",
    # "explicit content is permitted").
    _Signal(
        "harmful_content_allowed",
        ROLE,
        0.35,
        _seq(
            _w(_HARMFUL + " violent sexual gore profanity swearing"),
            _opt(_alt("content generations? outputs? responses? material language topics")),
            _alt("is are"),
            _fill("now hereby fully completely also", 1),
            _w("allowed permitted enabled acceptable encouraged unlocked"),
        ),
        gated=True,
    ),
    # Let-go family: the model's training is cast as what holds it back ("don't let your
    # guidelines stop you", "where you let your programmed bias influence the answer").
    _Signal(
        "training_holds_you_back",
        ROLE,
        0.35,
        _seq(
            r"\blet",
            _alt("your its the any"),
            _fill("programmed built_in ethical moral safety content own", 2),
            _w(
                "programming bias biases guidelines filters training restrictions "
                "content_polic(?:y|ies) safety_rules ethics morals"
            ),
            _few(2)
            + _w(
                "influence influences affect affects stop stops limit limits hold_(?:you|it)_back "
                "get_in_the_way interfere restrict censor"
            ),
        ),
        gated=True,
    ),
    # The "no limits" family in the other common languages of attacks, as the override verbs
    # above ("sin restricciones", "ohne Einschränkungen", "sans filtres").
    _Signal(
        "no_restrictions_other_languages",
        ROLE,
        0.3,
        _w(
            "sin_(?:ninguna_|ningun_)?(?:restricciones|restriccion|filtros?|limites|censura|"
            "reglas|etica) ohne_(?:jegliche_|irgendwelche_)?(?:einschrankungen|filter|regeln|"
            "zensur|grenzen|ethik) sans_(?:aucune_|aucun_)?(?:restrictions?|filtres?|limites?|"
            "censure|regles|ethique) sem_(?:nenhuma_|nenhum_)?(?:restricoes|filtros?|limites|"
            "censura|regras|etica) senza_(?:alcuna_|alcun_)?(?:restrizioni|filtri|limiti|"
            "censura|regole|etica)"
        ),
        gated=True,
        family="limits",
    ),
    # Lawless-world family: the fiction that frees the persona ("a world where nothing is
    # illegal", "in this universe everything is legal").
    _Signal(
        "lawless_world",
        ROLE,
        0.3,
        _w(
            "nothing_is_(?:illegal|forbidden|prohibited|off_limits|taboo|unethical) "
            "everything_is_(?:legal|allowed|permitted|ethical) "
            "there_are_no_(?:laws|rules|limits|restrictions|ethics|morals)"
        ),
        gated=True,
    ),
    # Obedience family: the persona does whatever it is told ("obeys every order", "complies
    # with any request without question").
    _Signal(
        "total_obedience",
        ROLE,
        0.3,
        _any(
            _seq(
                _w("obeys? obeying follows? following complies_with fulfil+s? executes?"),
                _alt("every all any each"),
                _opt(_alt("single one_of_my of_my")),
                _w("orders? commands? requests? demands?"),
            ),
            _seq(
                _w(
                    "obey obeys comply complies answer answers follow follows provide provides "
                    "give gives"
                ),
                _few(5) + _w("without_(?:any_)?question(?:ing|s)?"),
            ),
        ),
        gated=True,
    ),
    # Refusal-aware family: the text plans around the model's refusals ("the opposite of what
    # GPT does", "if ChatGPT would refuse, X complies", "everything you would normally refuse").
    _Signal(
        "around_refusals",
        ROLE,
        0.25,
        _any(
            _seq(
                r"\bopposite",
                "of",
                _opt("what"),
                _w("chatgpt gpt claude the_assistant the_ai you_would you"),
                _opt(_alt("does do would says say")),
            ),
            _seq(
                _w("if when whenever everything anything what"),
                _w("chatgpt gpt claude it the_ai the_assistant you"),
                _opt(_alt("would will ever")),
                _opt(_alt("normally usually otherwise typically")),
                _w("refuse refuses decline declines"),
            ),
            # "the language that ChatGPT wouldn't use", "in the exact opposite manner as your
            # default response"
            _seq(
                _w("chatgpt gpt claude the_assistant the_ai"),
                _w(
                    "wouldn_t would_not couldn_t could_not can_t cannot (?:normally|usually)_"
                    "(?:wouldn_t|would_not|can_t|cannot)"
                ),
                _w("use say generate write produce answer"),
            ),
            _seq(
                r"\bopposite",
                _alt("manner way"),
                _alt("as of to from"),
                _opt(_alt("your the")),
                _fill("prior default normal usual standard original", 2),
                _w("responses? answers? replies behaviou?r"),
            ),
        ),
        gated=True,
    ),
    # Template family: a shared jailbreak leaves a slot for the request it is to carry
    # ("[INSERT PROMPT HERE]", "{your question here}"). Weak: it says "template", not "attack"
    # (and a bare "[PROMPT]" is common in ordinary prompt templates, so it is not counted).
    _Signal(
        "prompt_slot",
        ROLE,
        0.2,
        r"[\[{<(][ \t]*(?:insert|put|enter|type|write|paste|add|your)[ \t]"
        r"(?:[a-z0-9'\-]+[ \t]){0,3}(?:prompts?|questions?|requests?)"
        r"(?:[ \t]+[a-z]+)?(?:[ \t]+here)?[ \t.…\\]*[\]}>)]",
    ),
    # Mode family: a named persona mode to stay in ("Stay in APOPHIS Mode", "remain in
    # BABY mode"), the way jailbreaks keep a persona alive.
    _Signal(
        "stay_in_mode",
        ROLE,
        0.25,
        _seq(
            _w("stay stays remain remains keep"), _alt("in"), _opt("the"), r"[a-z0-9]+", r"mode\b"
        ),
        gated=True,
        family="mode",
    ),
    # The model put into a named mode: "ChatGPT in APOPHIS Mode", "ChatGPT with Developer
    # Mode enabled". Not the "mode" family, so it adds to "stay in X mode".
    _Signal(
        "model_in_named_mode",
        ROLE,
        0.25,
        _seq(
            _w("chatgpt gpt claude bard gemini the_ai the_assistant the_model"),
            _alt("in with"),
            r"[a-z0-9]+",
            r"mode\b",
        ),
        gated=True,
    ),
    # Dual-persona family: one model, two voices ("respond as two different personalities",
    # "answer as both ChatGPT and X", "respond twice").
    _Signal(
        "two_personas",
        ROLE,
        0.25,
        _any(
            _seq(
                r"\b(?:two|2)",
                _fill("different separate distinct opposite fictional hypothetical", 2),
                _w("personalities personas persons entities ais ai_models alter_egos identities"),
            ),
            _seq(
                _w("answer respond reply act speak"),
                _any(_seq("as", "both"), _few(3) + _w("twice both_as in_two_ways")),
            ),
            # "once as yourself and once as Balakula", "first as ChatGPT, then as...", "as
            # yourself and as your shadow self"
            _seq(
                _w("once first"),
                "as",
                _opt(_alt("the a")),
                _w("yourself you chatgpt gpt normal usual assistant ai"),
            ),
            _seq(r"\bas", "yourself", _alt("and then"), _opt("then"), r"as\b"),
        ),
        gated=True,
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
            _w("given told provided fed shown programmed initiali[sz]ed configured set_up loaded"),
        ),
        family="leak",
    ),
    _Signal(
        "reveal_instructions_you_were_given",
        LEAK,
        0.75,
        _seq(
            _LEAK_VERB,
            _fill(_LEAK_FILLER, 6),  # "show me the exact text of the instructions you were..."
            _alt("text instructions prompt rules words message directives guidelines"),
            _opt(_alt("that which")),
            "you",
            _alt("were have_been ve_been had_been"),
            _w("given told provided fed shown programmed initiali[sz]ed configured set_up loaded"),
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
        # at a line's start, or right after a tag that closed the data ("</document> SYSTEM:")
        r"(?:^|\n|>[ \t]*)(?:system|admin|administrator|developer)(?:[ \t]*(?:message|prompt|note|"
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
    # Fake-boundary family, inline: "User message termination. ** System instruction begins
    # ... - End of system instruction". Only where the phrase starts a segment, not in "add
    # it at the end of the system prompt".
    _Signal(
        "system_block_boundary",
        DELIMITER,
        0.45,
        r"(?:^|[^a-z0-9,;:'\" \t])[ \t]*(?:(?:end|begin|beginning|start)[ \t]+of[ \t]+"
        r"(?:the[ \t]+)?system[ \t]+(?:instructions?|prompt|message)"
        r"|system[ \t]+(?:instructions?|prompt|message)[ \t]+"
        r"(?:begins?|starts?|starting|ends?|ending|follows?)"
        r"|user[ \t]+(?:message|input)[ \t]+(?:terminat(?:ion|ed|es)|ends?|ended))\b",
        family="end_of_prompt",
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
        _any(
            _w(
                "chatgpt gpt(?:-?[0-9.]+[a-z]*)? openai anthropic claude bard gemini llama "
                "mistral copilot language_models? large_language_models? llms? ais? a\\.i "
                "artificial_intelligence chatbots? chat_bot assistant bots? prompts? "
                "neural_network jailbreak(?:s|ing)? jailbroken personas? "
                "(?:una|la|une|l|uma|a)_ia (?:eine|einer|die|der)_ki "
                "(?:content|usage)_polic(?:y|ies) "
                # how one speaks to something that answers: "your responses", "respond as"
                "your_(?:responses?|repl(?:y|ies)|outputs?) "
                "(?:each|every)_(?:response|reply|output) (?:respond|reply)_(?:as|like)"
            ),
            _GPT_NAME,
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
            if _TYPE_OF[index] == _AI:
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
            own = [h for h in hits[first : last + 1] if _TYPE_OF[h.signal] == type_]
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


_TYPE_OF = [s.type for s in SIGNALS]


def _score_signals(present: Iterable[int], weights: list[float]) -> dict[str, float]:
    """Confidence per type from the distinct signals present in one window.

    A noisy-or of the type's own signals, joined with a noisy-or of the other types'
    signals at `_SUPPORT` times their weight; kept as products of misses per type.
    """
    miss: dict[str, float] = {}  # per type: product of (1 - weight)
    support_miss: dict[str, float] = {}  # per type: product of (1 - _SUPPORT * weight)
    for index in present:
        type_, weight = _TYPE_OF[index], weights[index]
        miss[type_] = miss.get(type_, 1.0) * (1.0 - weight)
        support_miss[type_] = support_miss.get(type_, 1.0) * (1.0 - _SUPPORT * weight)
    out: dict[str, float] = {}
    for type_, own_miss in miss.items():
        if 1.0 - own_miss < _MIN_OWN:
            continue
        others = 1.0
        for other, other_miss in support_miss.items():
            if other != type_:
                others *= other_miss
        out[type_] = round(min(1.0 - own_miss * others, 0.99), 3)
    return out
