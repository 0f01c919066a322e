"""The command tree, one module per command group.

Top-level names map to the module that defines them, so a run imports only the
module of the command it runs (start-up cost stays flat as commands are added).
Adding a command: define it in its group's module and add its name here.
"""

TOP_LEVEL: dict[str, tuple[str, str]] = {
    # management commands
    "builder": ("build", "BUILDER"),
    "container": ("containers", "CONTAINER"),
    "image": ("images", "IMAGE"),
    "network": ("networks", "NETWORK"),
    "registry": ("registry", "REGISTRY"),
    "system": ("system", "SYSTEM"),
    "volume": ("volumes", "VOLUME"),
    # shortcuts and single commands
    "attach": ("run", "ATTACH"),
    "build": ("build", "BUILD"),
    "commit": ("containers", "COMMIT"),
    "cp": ("cp", "CP"),
    "create": ("run", "CREATE"),
    "diff": ("containers", "DIFF"),
    "events": ("system", "EVENTS"),
    "exec": ("exec", "EXEC"),
    "export": ("containers", "EXPORT"),
    "history": ("images", "HISTORY"),
    "images": ("images", "IMAGES"),
    "import": ("images", "IMPORT"),
    "info": ("system", "INFO"),
    "inspect": ("inspect", "INSPECT"),
    "kill": ("containers", "KILL"),
    "load": ("images", "LOAD"),
    "login": ("registry", "LOGIN"),
    "logout": ("registry", "LOGOUT"),
    "logs": ("containers", "LOGS"),
    "pause": ("containers", "PAUSE"),
    "port": ("containers", "PORT"),
    "ps": ("containers", "PS"),
    "pull": ("registry", "PULL"),
    "push": ("registry", "PUSH"),
    "rename": ("containers", "RENAME"),
    "restart": ("containers", "RESTART"),
    "rm": ("containers", "RM"),
    "rmi": ("images", "RMI"),
    "run": ("run", "RUN"),
    "save": ("images", "SAVE"),
    "start": ("run", "START"),
    "stats": ("stats", "STATS"),
    "stop": ("containers", "STOP"),
    "tag": ("images", "TAG"),
    "top": ("containers", "TOP"),
    "unpause": ("containers", "UNPAUSE"),
    "update": ("containers", "UPDATE"),
    "version": ("system", "VERSION"),
    "wait": ("containers", "WAIT"),
}


def lookup(name: str):
    entry = TOP_LEVEL.get(name)
    if entry is None:
        return None
    module = __import__(f"{__name__}.{entry[0]}", fromlist=[entry[1]])
    return getattr(module, entry[1])


def listing() -> list:
    return [lookup(name) for name in TOP_LEVEL]
