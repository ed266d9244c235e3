import hashlib
import json

from django.http import (FileResponse, HttpResponse, HttpResponseRedirect, JsonResponse,
                         StreamingHttpResponse)
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt


def pattern_block(i):
    return hashlib.sha256(str(i).encode()).digest() * 2048


def index(request):
    return HttpResponse("django ok")


def csrf(request):
    return JsonResponse({"token": get_token(request)})


def _form_doc(request):
    return {k: request.POST.getlist(k) for k in request.POST}


def form(request):  # CSRF-protected
    return JsonResponse(_form_doc(request))


@csrf_exempt
def form_exempt(request):
    return JsonResponse(_form_doc(request))


@csrf_exempt
def upload(request):
    f = request.FILES["file"]
    h = hashlib.sha256()
    n = 0
    for chunk in f.chunks(65536):
        h.update(chunk)
        n += len(chunk)
    return JsonResponse({"filename": f.name, "size": n, "sha256": h.hexdigest(),
                         "note": request.POST.get("note")})


def go(request):
    return HttpResponseRedirect("/target/")


def target(request):
    return HttpResponse("target reached")


def setcookie(request):
    resp = HttpResponse("cookie set")
    resp.set_cookie("flavour", "chocolate")
    resp.set_cookie("second", "two")
    return resp


def getcookie(request):
    return JsonResponse({k: v for k, v in request.COOKIES.items() if k != "csrftoken"})


def download(request):
    blocks = int(request.GET.get("blocks", "160"))  # 10 MiB
    return StreamingHttpResponse((pattern_block(i) for i in range(blocks)),
                                 content_type="application/octet-stream")


def fileresponse(request):
    return FileResponse(open(request.GET["path"], "rb"), content_type="application/octet-stream")


@csrf_exempt
def json_echo(request):
    data = json.loads(request.body)
    return JsonResponse({"received": data, "count": len(data.get("items", []))})
