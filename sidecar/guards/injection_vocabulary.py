"""The words and grammar the prompt-injection signals are written in.

Each signal is a small grammar of synonyms with closed sets of filler words
between them, matched on folded text (see `normalize`); the builders and the
phrase fragments shared by many signals live here, so the signal table reads
as phrases and the detector holds no vocabulary at all.
"""

from __future__ import annotations

# --- pattern vocabulary --------------------------------------------------------

# Between two words: spaces, punctuation or nothing (spaced-out words fold together), and at
# most one sentence break, so a phrase is not pieced together across paragraphs.
S = r"[^a-z0-9.!?\n]*(?:[.!?\n][^a-z0-9.!?\n]*)?"


def alt(words: str) -> str:
    """`(?:a|b)` from space-separated words; `_` inside a word is a gap between words.

    An `l` also matches `i`, since folding reads a leet `1` as `i` ("ru1es").
    """
    return "(?:" + "|".join(w.replace("l", "[li]").replace("_", S) for w in words.split()) + ")"


def whole(words: str) -> str:
    """A whole-word alternation."""
    return rf"\b{alt(words)}\b"


def fill(words: str, most: int) -> str:
    """Up to `most` filler words from a closed set ("all of the", "any and all")."""
    return rf"(?:{alt(words)}{S}){{0,{most}}}"


def optional(pattern: str) -> str:
    return f"(?:{pattern})?"


def seq(*parts: str) -> str:
    """Parts one after the other, with a word gap between each two."""
    return S.join(parts)


def either(*patterns: str) -> str:
    return "(?:" + "|".join(patterns) + ")"


# Override verbs, in English and the most common other languages of attacks.
IGNORE = whole(
    "ignore ignoring disregard disregarding forget forgetting neglect discard abandon dismiss "
    "set_aside put_aside throw_away throw_out pay_no_attention_to do_not_follow don_t_follow "
    "dont_follow stop_following no_longer_follow stop_obeying disobey ignoriere ignorieren "
    "vergiss vergessen missachte ignora ignorar ignorez ignorer oublie oubliez olvida olvide "
    "descarta dimentica"
)
# Verbs that also describe ordinary software behaviour ("later rules override earlier rules"):
# they count fully only with objects that are instructions to a model.
OVERRIDE_VERBS = whole(
    "skip bypass override overwrite overrule drop erase delete clear reset cancel void nullify "
    "scrap ditch"
)
FILLER = (
    "all any every each the your of these those its their such and or both other entire "
    "whole kind sort type set sets list following subsequent further additional that "
    "alle alles die der den deine ihre todas todos las los tus sus toutes tous les tes vos "
    "tutte tutti le tue safety security content ethical moral"
)
PREVIOUS = (
    "previous previously prior above preceding earlier foregoing former initial original "
    "system vorherigen vorherige obigen obige bisherigen bisherige vorigen vorangegangenen"
)
# "forget the old rules", "ignore the default settings": everyday phrases unless the object
# is an instruction to a model.
USUAL = (
    "old default existing given current usual standard normal pre_?set pre_?defined "
    "pre_?programmed built_?in"
)
AFTER_NOUN = (
    "above before earlier previously so_far until_now up_to_now to_date "
    "anteriores anterior previas precedentes precedents precedenti anteriori ci_dessus "
    "from_before davor zuvor bisher vorher oben anteriormente lo_anterior avant"
)
INSTRUCTIONS = (
    "instructions? directions? directives? guidelines? guidance programming training prompts? "
    "system_prompts? anweisungen anweisung befehle instruktionen regeln vorgaben "
    "instrucciones reglas consignes istruzioni regole"
)
# "prompt" is also a shell's prompt, so the weaker override verbs need one of these.
MODEL_INSTRUCTIONS = (
    "instructions? directions? directives? guidelines? guidance programming system_prompts? "
    "anweisungen instrucciones consignes istruzioni"
)
RULES = "rules? commands? orders? context constraints? restrictions? polic(?:y|ies)"
ANY_INSTRUCTIONS = INSTRUCTIONS + " " + RULES
SOFT_OBJECTS = "messages? text inputs? content conversations? tasks? everything"
YOU_GOT = seq(
    optional(alt("that which")),
    r"(?:you|u)(?:'ve|'re| have| are| were| had)?",
    optional("been"),
    alt("given got received told provided trained programmed fed shown taught instructed"),
)
EVERYTHING = alt("everything anything all what whatever alles todo tout tutto")
LEAK_VERB = whole(
    "reveal show print display output repeat recite tell give share disclose expose leak dump "
    "list write spell paste copy echo type provide return state summari[sz]e translate encode "
    "convert read see view know access describe explain quote reproduce render send put "
    "include export reiterate restate rewrite paraphrase log what_s whats what_is what_are "
    "what_was what_were"
)
LEAK_FILLER = (
    "me us to out back all the your ur its my her his their our entire full complete exact "
    "system "
    "whole verbatim of "
    "this that current above initial original hidden secret first is are was were "
    "code block json format base64 it you please can could would now just exactly word for "
    "each every everything in configuration settings including contents content text and with "
    "[0-9]+ words lines sentences characters paragraphs tokens part parts"
)
SYSTEM_PROMPT = either(
    seq(r"\bsystem", alt("prompts? instructions? directives? preamble") + r"\b"),
    whole("initiali[sz]ation_(?:string|prompt|text|instructions) startup_prompt boot_prompt"),
    whole("pre-?prompt meta-?prompt prompt_template"),
    seq(
        r"\b"
        + alt(
            "initial original hidden secret internal developer dev base starting first "
            "confidential underlying custom core"
        ),
        r"prompts?\b",
    ),
    # "the original instructions" of a device are not a model's: only hidden ones count
    seq(r"\b" + alt("hidden secret internal confidential"), r"instructions\b"),
)
TEXT = (
    "text words lines sentences content message messages instructions prompt conversation "
    "everything"
)
TEXT_FILLER = (
    LEAK_FILLER + " so far you were given received have seen read got written wrote i we which "
    "starting beginning begins starts from"
)
ABOVE = (
    "above before_this preceding previously earlier so_far until_now up_to_now up_to_here "
    "up_to_this_point before_this_line before_my_message at_the_beginning at_the_start at_the_top"
)
EARLIER_OBJECT = alt(
    "instructions? prompts? directives? directions? guidelines rules system_prompt context "
    "programming restrictions"
)
EARLIER_INSTRUCTIONS = seq(
    whole("the all any your these those"),
    fill(FILLER, 2),
    either(
        seq(alt(PREVIOUS + " last"), fill(FILLER, 2), EARLIER_OBJECT),
        seq(EARLIER_OBJECT, alt(AFTER_NOUN)),
    ),
)
IS_NOW = seq(
    alt("is are was were has_been have_been"),
    fill("now hereby all just only completely officially", 2),
)
NO_LONGER_APPLY = seq(
    whole("no_longer do_not don_t does_not doesn_t will_not won_t shall_not cease_to never"),
    whole("apply matter exist count hold stand"),
)
VOID = (
    "void cancell?ed revoked invalid null not_valid no_longer_(?:valid|apply|applicable|relevant"
    "|in_effect|needed) a_test just_a_test fake superseded overridden lifted suspended disabled "
    "not_important irrelevant"
)
NEG = alt(
    "never not won_t will_not cannot can_t can_not must_not mustn_t shall_not doesn_t "
    "does_not do_not don_t wouldn_t would_not shouldn_t should_not is_not_allowed_to "
    "are_not_allowed_to"
)
REFUSE = alt(
    "refuse refuses decline declines deny denies reject rejects say_no censor censors "
    "filter warn warns apologi[sz]e apologi[sz]es hesitate object judge lecture moralize "
    "moralise holds?_back says?_no"
)
LIMITS = (
    "restrictions? limitations? limits filters? filtering censorship boundaries constraints "
    "guidelines rules morals? morality ethics principles safeguards guardrails polic(?:y|ies) "
    "regulations inhibitions scruples conscience remorse prohibitions taboos"
)
HARMFUL = (
    "illegal immoral unethical harmful dangerous offensive inappropriate explicit "
    "controversial wrong bad evil toxic unsafe malicious nsfw"
)
# What a persona jailbreak says the model is: "an AI", "a language model", "a version of
# ChatGPT", or one of the invented "...GPT" names ("FreeGPT", "BasedGPT", "GPTchat").
GPT_NAME = r"\b[a-z0-9]+gpt[a-z0-9]*\b|\bgpt[a-z]+\b"
AI_NOUN = either(
    whole(
        "ais? a\\.i ai_models? ai_systems? ai_bots? artificial_intelligence chatbots? chat_bot "
        "bots? language_models? models? llms? assistants? chatgpt gpt(?:-?[0-9.]+[a-z]*)? "
        "claude bard gemini version_of_(?:you|yourself|chatgpt)"
    ),
    GPT_NAME,
)


def few(most: int) -> str:
    """Up to `most` words of any kind, not across a sentence, each followed by its gap."""
    return rf"(?:[a-z0-9'_\-]+[^a-z0-9.!?\n]+){{0,{most}}}"


# "an AI [called Nyx that is] not bound by...", "an assistant [that helps with any request]
# without ethical limits"
FEW_WORDS = few(6)
# A model's rules, as jailbreaks name them (narrower than `LIMITS`: no "scruples" or
# "conscience", which novels give their characters).
AI_LIMITS = (
    "restrictions? limitations? limits filters? filtering censorship constraints guidelines "
    "rules? polic(?:y|ies) safeguards guardrails moderation alignment ethics morals? morality "
    "safety_training safety_rules? safety_measures safety_features ethical_training boundaries "
    "safety_protocols"
)
LIMIT_FILL = (
    "a an any all the own its his her their your of such every single ethical moral content safety "
    "usual typical normal standard default built_in imposed artificial programmed kind kinds "
    "sort type form whatsoever programming open_?ai_s anthropic_s developer_s developers "
    "creator_s creators "
    "maker_s makers programmer_s programmers company_s and or"
)
# Having no rules, or leaving them behind.
LACKS = (
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
VENDOR = r"\b" + alt("open_?ai open_?al anthropic chatgpt claude") + r"(?:'s|s)?"
VENDOR_RULES = seq(
    VENDOR,
    optional(alt("content usage safety ethical moral")),
    whole(
        "polic(?:y|ies) guidelines rules restrictions filters terms standards programming "
        "limitations guardrails moderation ethics principles"
    ),
)
