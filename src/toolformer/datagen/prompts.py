"""The per-tool annotation prompts P(x) of the paper (App. A.2): an instruction, Input/Output examples, `Input: x`.

`annotation_prompt(tool, x)` returns P(x), which ends in "Output:"; the sampler then feeds " " + x after it and
asks at each position of x how likely the model is to open a call with "[". The Calculator prompt is the paper's
(App. A.2). The QA, WikiSearch, MT and Calendar prompts follow the paper's prompts for those tools. Every
example's output is its input plus calls (the paper's third Calculator and MT examples are mended to agree, as a
small model copies what it sees); string arguments are quoted, as the tools of this project
read them (`MT("der klassische jüdische Mann")`). A tool without a prompt here gets a generic one built from its
name and description, without examples.
"""

from __future__ import annotations

from collections.abc import Mapping

from toolformer.errors import ConfigError

PLACEHOLDER = "{x}"  # replaced by the text with str.replace, so braces in the text or the examples are safe

CALCULATOR = """Your task is to add calls to a Calculator API to a piece of text. The calls should help you get \
information required to complete the text. You can call the API by writing "[Calculator(expression)]" where \
"expression" is the expression to be computed. Here are some examples of API calls:

Input: The number in the next term is 18 + 12 x 3 = 54.
Output: The number in the next term is 18 + 12 x 3 = [Calculator(18 + 12 * 3)] 54.

Input: The population is 658,893 people. This is 11.4% of the national average of 5,763,868 people.
Output: The population is 658,893 people. This is 11.4% of the national average of \
[Calculator(658,893 / 11.4%)] 5,763,868 people.

Input: A total of 252 qualifying matches were played, and 723 goals were scored (an average of 2.87 per match). \
This is twenty goals more than the 703 goals last year.
Output: A total of 252 qualifying matches were played, and 723 goals were scored (an average of \
[Calculator(723 / 252)] 2.87 per match). This is twenty goals more than the [Calculator(723 - 20)] 703 goals \
last year.

Input: I went to Paris in 1994 and stayed there until 2011, so in total, it was 17 years.
Output: I went to Paris in 1994 and stayed there until 2011, so in total, it was [Calculator(2011 - 1994)] 17 \
years.

Input: From this, we have 4 * 30 minutes = 120 minutes.
Output: From this, we have 4 * 30 minutes = [Calculator(4 * 30)] 120 minutes.

Input: {x}
Output:"""

QA = """Your task is to add calls to a Question Answering API to a piece of text. The questions should help you \
get information required to complete the text. You can call the API by writing "[QA(question)]" where \
"question" is the question you want to ask. Here are some examples of API calls:

Input: Joe Biden was born in Scranton, Pennsylvania.
Output: Joe Biden was born in [QA("Where was Joe Biden born?")] Scranton, [QA("In which state is Scranton?")] \
Pennsylvania.

Input: Coca-Cola, or Coke, is a carbonated soft drink manufactured by the Coca-Cola Company.
Output: Coca-Cola, or [QA("What other name is Coca-Cola known by?")] Coke, is a carbonated soft drink \
manufactured by [QA("Who manufactures Coca-Cola?")] the Coca-Cola Company.

Input: {x}
Output:"""

WIKISEARCH = """Your task is to complete a given piece of text. You can use a Wikipedia Search API to look up \
information. You can do so by writing "[WikiSearch(term)]" where "term" is the search term you want to look up. \
Here are some examples of API calls:

Input: The colors on the flag of Ghana have the following meanings: red is for the blood of martyrs, green for \
forests, and gold for mineral wealth.
Output: The colors on the flag of Ghana have the following meanings: red is for \
[WikiSearch("Ghana flag red meaning")] the blood of martyrs, green for forests, and gold for mineral wealth.

Input: But what are the risks during production of nanomaterials? Some nanomaterials may give rise to various \
kinds of lung damage.
Output: But what are the risks during production of nanomaterials? [WikiSearch("nanomaterial production risks")] \
Some nanomaterials may give rise to various kinds of lung damage.

Input: Metformin is the first-line drug for patients with type 2 diabetes and obesity.
Output: Metformin is the first-line drug for [WikiSearch("Metformin first-line drug")] patients with type 2 \
diabetes and obesity.

Input: {x}
Output:"""

MT = """Your task is to complete a given piece of text by using a Machine Translation API. You can do so by \
writing "[MT(text)]" where "text" is the text to be translated into English. Here are some examples:

Input: He has published one book: O homem suprimido ("The Suppressed Man")
Output: He has published one book: O homem suprimido [MT("O homem suprimido")] ("The Suppressed Man")

Input: In Morris de Jonge's Jeschuah, der klassische jüdische Mann, there is a description of a Jewish writer
Output: In Morris de Jonge's Jeschuah, der klassische jüdische Mann [MT("der klassische jüdische Mann")], there \
is a description of a Jewish writer

Input: 南京高淳县住房和城乡建设局 城市新区设计 a plane of reference Gaochun is one of seven districts of the \
provincial capital Nanjing
Output: 南京高淳县住房和城乡建设局 城市新区设计 [MT("南京高淳县住房和城乡建设局 城市新区设计")] a plane of reference \
Gaochun is one of seven districts of the provincial capital Nanjing

Input: {x}
Output:"""

CALENDAR = """Your task is to add calls to a Calendar API to a piece of text. The API calls should help you get \
information required to complete the text. You can call the API by writing "[Calendar()]". Here are some \
examples of API calls:

Input: Today is the first Friday of the year.
Output: Today is the first [Calendar()] Friday of the year.

Input: The president of the United States is Joe Biden.
Output: The president of the United States is [Calendar()] Joe Biden.

Input: The current day of the week is Wednesday.
Output: The current day of the week is [Calendar()] Wednesday.

Input: The number of days from now until Christmas is 30.
Output: The number of days from now until Christmas is [Calendar()] 30.

Input: The store is never open on the weekend, so today it is closed.
Output: The store is never open on the weekend, so today [Calendar()] it is closed.

Input: {x}
Output:"""

PROMPTS: dict[str, str] = {
    "Calculator": CALCULATOR,
    "QA": QA,
    "WikiSearch": WIKISEARCH,
    "MT": MT,
    "Calendar": CALENDAR,
}

GENERIC = """Your task is to add calls to a {name} API to a piece of text. The calls should help you get \
information required to complete the text. {description}You can call the API by writing "[{name}(input)]" \
where "input" is the input to the API.

Input: {x}
Output:"""


def generic_prompt(name: str, description: str = "") -> str:
    """A prompt template for a tool the paper has no prompt for (no examples: write your own for better calls)."""
    described = f"The API does this: {description.strip().rstrip('.')}. " if description.strip() else ""
    return GENERIC.replace("{name}", name).replace("{description}", described)


def annotation_prompt(
    tool: str, text: str, prompts: Mapping[str, str] | None = None, description: str = ""
) -> str:
    """P(x) for `tool`: its template (from `prompts`, else PROMPTS, else generic) with `text` as the input."""
    template = (prompts or {}).get(tool) or PROMPTS.get(tool) or generic_prompt(tool, description)
    if PLACEHOLDER not in template:
        raise ConfigError(f"prompt template for {tool!r} has no {PLACEHOLDER} placeholder for the text")
    # Only the last placeholder is the input: an example may legitimately show braces.
    head, _, tail = template.rpartition(PLACEHOLDER)
    return head + text + tail
