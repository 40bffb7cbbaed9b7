"""The HTML of the subscriber pages: plain, accessible, no JavaScript, styled like the issue.

Jinja2 with autoescaping: anything a visitor typed is escaped.
"""

from __future__ import annotations

from typing import Any

import jinja2

LAYOUT = """<!DOCTYPE html>
<html lang="{{ language }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ heading }} — {{ name }}</title>
<style>
 body { margin: 0; background: #f3f1ec; color: #1b2631; font: 17px/1.5 Georgia, Times New Roman, serif; }
 main { max-width: 600px; margin: 0 auto; background: #ffffff; padding: 24px 28px 32px; }
 h1 { font-size: 28px; margin: 0 0 4px; }
 h2 { font: bold 20px/1.3 Helvetica, Arial, sans-serif; margin: 18px 0 10px; }
 p.site { margin: 0 0 18px; font: 14px Helvetica, Arial, sans-serif; color: #5d6d7e; }
 a { color: #1a5276; }
 fieldset { border: 1px solid #d5dbdb; margin: 0 0 16px; padding: 10px 14px; }
 legend { font: bold 15px Helvetica, Arial, sans-serif; }
 label { display: block; margin: 4px 0; font: 16px Helvetica, Arial, sans-serif; }
 input[type=email], input[type=text] { font-size: 16px; padding: 6px; width: 100%; box-sizing: border-box; }
 button { font: bold 16px Helvetica, Arial, sans-serif; background: #a93226; color: #ffffff; border: 0;
          padding: 10px 18px; cursor: pointer; }
 .note { background: #fcf3cf; padding: 10px 12px; }
 .error { background: #fadbd8; color: #78281f; padding: 10px 12px; }
 ul.issues { padding-left: 20px; }
</style>
</head>
<body>
<main>
<p class="site"><a href="{{ base }}/archive">{{ name }}</a></p>
<h1>{{ heading }}</h1>
{% block content %}{% endblock %}
</main>
</body>
</html>
"""

PAGES = {
    "layout.html": LAYOUT,
    "message.html": """{% extends "layout.html" %}{% block content %}
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<p>{{ message }}</p>
{% if link %}<p><a href="{{ link }}">{{ link_text }}</a></p>{% endif %}
{% endblock %}""",
    "confirm_unsubscribe.html": """{% extends "layout.html" %}{% block content %}
<p>Do you want to stop receiving {{ name }} at <strong>{{ email }}</strong>?</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>
<p><a href="{{ preferences }}">Change what you receive instead</a></p>
{% endblock %}""",
    "preferences.html": """{% extends "layout.html" %}{% block content %}
{% if saved %}<p class="note" role="status">Your preferences are saved.</p>{% endif %}
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<p>Preferences of <strong>{{ email }}</strong>{% if status != "active" %} — you are {{ status }}{% endif %}.</p>
<form method="post" action="{{ action }}">
{% if status != "active" %}
<fieldset><legend>Subscription</legend>
<label><input type="checkbox" name="resubscribe" value="1"> Receive {{ name }} again</label>
</fieldset>
{% endif %}
<fieldset><legend>Countries</legend>
{% for tag in countries %}<label><input type="checkbox" name="interest" value="{{ tag }}"{% if tag in chosen %} checked{% endif %}> {{ tag }}</label>
{% endfor %}</fieldset>
<fieldset><legend>Topics</legend>
{% for tag in topics %}<label><input type="checkbox" name="interest" value="{{ tag }}"{% if tag in chosen %} checked{% endif %}> {{ tag|capitalize }}</label>
{% endfor %}</fieldset>
<p>No box ticked means the whole issue.</p>
{% if all_lists %}<fieldset><legend>Lists</legend>
{% for item in all_lists %}<label><input type="checkbox" name="list" value="{{ item }}"{% if item in lists %} checked{% endif %}> {{ item }}</label>
{% endfor %}</fieldset>{% endif %}
<button type="submit">Save</button>
</form>
<p><a href="{{ unsubscribe }}">Unsubscribe from everything</a></p>
{% endblock %}""",
    "subscribe.html": """{% extends "layout.html" %}{% block content %}
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ base }}/subscribe">
<label for="email">E-mail address</label>
<input id="email" name="email" type="email" required value="{{ email }}" autocomplete="email">
<label for="name">Name (optional)</label>
<input id="name" name="name" type="text" value="{{ person }}" maxlength="200" autocomplete="name">
<fieldset><legend>Countries (none: everything)</legend>
{% for tag in countries %}<label><input type="checkbox" name="interest" value="{{ tag }}"> {{ tag }}</label>
{% endfor %}</fieldset>
<fieldset><legend>Topics</legend>
{% for tag in topics %}<label><input type="checkbox" name="interest" value="{{ tag }}"> {{ tag|capitalize }}</label>
{% endfor %}</fieldset>
<button type="submit">Subscribe</button>
</form>
<p>We send a confirmation link; nothing is sent to you before you click it.</p>
{% endblock %}""",
    "confirm_subscription.html": """{% extends "layout.html" %}{% block content %}
<p>Confirm that <strong>{{ email }}</strong> should receive {{ name }}.</p>
<form method="post" action="{{ action }}"><button type="submit">Confirm my subscription</button></form>
{% endblock %}""",
    "archive.html": """{% extends "layout.html" %}{% block content %}
<p><a href="{{ base }}/archive/feed.xml">Atom feed</a> · <a href="{{ base }}/subscribe">Subscribe</a></p>
{% if issues %}<ul class="issues">
{% for issue in issues %}<li><a href="{{ base }}/archive/{{ issue.date }}">{{ issue.title }}</a> ({{ issue.count }} articles)</li>
{% endfor %}</ul>{% else %}<p>No issue yet.</p>{% endif %}
{% endblock %}""",
    "feed.xml": """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
<title>{{ name }}</title>
<id>{{ base }}/archive</id>
<link rel="self" href="{{ base }}/archive/feed.xml"/>
<link href="{{ base }}/archive"/>
<updated>{{ updated }}</updated>
{% for issue in issues %}<entry>
<title>{{ issue.title }}</title>
<id>{{ base }}/archive/{{ issue.date }}</id>
<link href="{{ base }}/archive/{{ issue.date }}"/>
<updated>{{ issue.updated }}</updated>
<summary>{{ issue.summary }}</summary>
</entry>
{% endfor %}</feed>
""",
    "confirmation_email.txt": """Hello{% if person %} {{ person }}{% endif %},

please confirm that you want to receive {{ name }} at {{ email }}:

{{ link }}

The link is valid for {{ hours }} hours. If you did not ask for this, ignore this message:
nothing will be sent to you.
""",
}

_env = jinja2.Environment(
    loader=jinja2.DictLoader(PAGES),
    autoescape=jinja2.select_autoescape(["html", "xml"]),
)


def page(template: str, /, **context: Any) -> str:
    return _env.get_template(template).render(**context)
