"""Names compare by a stored key (characters/names.py) instead of the database's LOWER(), which
folds ASCII only on SQLite. Existing instances get their key; if two existing names now collide
(e.g. `Ángel` and `ángel`, allowed before on SQLite), the later one is renamed `<name>-2` (then
`-3`, …) so nothing is lost and the new unique constraint holds."""

from django.db import migrations, models

import characters.models
import realtime.text_safety
from characters.names import name_key, normalize_name


def fill_keys(apps, schema_editor):
    Character = apps.get_model("characters", "Character")
    Instance = apps.get_model("characters", "CharacterInstance")
    for character in Character.objects.all().only("pk", "name"):
        Character.objects.filter(pk=character.pk).update(name_key=name_key(character.name))
    taken: set[str] = set()
    for instance in Instance.objects.order_by("created_at", "pk").only("pk", "name"):
        name = normalize_name(instance.name)
        base, suffix = name, 1
        while name_key(name) in taken:
            suffix += 1
            name = f"{base[: 64 - len(str(suffix)) - 1]}-{suffix}"
        taken.add(name_key(name))
        Instance.objects.filter(pk=instance.pk).update(name=name, name_key=name_key(name))


class Migration(migrations.Migration):
    dependencies = [
        ("characters", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name='character',
            name='description',
            field=models.TextField(help_text="The character's personality.", validators=[characters.models.validate_description_length, realtime.text_safety.validate_safe_text]),
        ),
        migrations.AlterField(
            model_name='character',
            name='greeting',
            field=models.TextField(blank=True, max_length=1000, validators=[realtime.text_safety.validate_safe_text]),
        ),
        migrations.AlterField(
            model_name='character',
            name='model_name',
            field=models.CharField(blank=True, help_text='Chat model for this character; blank uses the default.', max_length=200, validators=[realtime.text_safety.validate_safe_text]),
        ),
        migrations.AlterField(
            model_name='character',
            name='name',
            field=models.CharField(max_length=100, validators=[realtime.text_safety.validate_safe_text]),
        ),
        migrations.AlterField(
            model_name='characterinstance',
            name='memory',
            field=models.TextField(blank=True, default='', validators=[characters.models.validate_memory_length, realtime.text_safety.validate_safe_text]),
        ),
        migrations.AddField(
            model_name="character",
            name="name_key",
            field=models.CharField(db_index=True, default="", editable=False, max_length=300),
        ),
        migrations.AddField(
            model_name="characterinstance",
            name="name_key",
            field=models.CharField(default="", editable=False, max_length=200),
        ),
        migrations.RemoveConstraint(
            model_name="characterinstance",
            name="unique_instance_name_ci",
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="characterinstance",
            constraint=models.UniqueConstraint(
                fields=("name_key",),
                name="unique_instance_name_key",
                violation_error_message="That instance name is already taken.",
            ),
        ),
    ]
