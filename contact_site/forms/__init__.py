"""The forms of the site, declared once in the forms file (CONTACT_FORMS_FILE)."""
