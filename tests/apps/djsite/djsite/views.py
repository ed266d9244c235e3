from django.core.files.storage import default_storage
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def upload(request):
    """Saves the uploaded `file` under MEDIA_ROOT/uploads/ and returns its URL."""
    f = request.FILES["file"]
    name = default_storage.save("uploads/" + f.name, f)
    return JsonResponse({"name": name, "url": default_storage.url(name), "size": f.size})


def where(request, word=None):
    """What the app sees of its mount point: the environ's split and Django's URLs."""
    return JsonResponse({
        "app": "django",
        "script_name": request.META.get("SCRIPT_NAME", ""),
        "path_info": request.META.get("PATH_INFO", ""),
        "path": request.path,
        "reverse": reverse("where"),
        "reverse_word": reverse("where-word", args=["w"]),
        "absolute": request.build_absolute_uri(reverse("where")),
        "word": word,
    })
